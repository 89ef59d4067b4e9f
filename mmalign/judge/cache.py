"""The judge's response cache: one JSON file per request, so a rerun (or a run resumed after a kill) costs nothing.

The key is the sha256 of the request body as sent (model, messages with their image bytes, sampling settings),
never of its headers, so the API key can reach neither the key nor the file. Files are written under a temporary
name and renamed, so a killed run leaves no half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def request_hash(body: dict) -> str:
    """sha256 of the body's canonical JSON: equal bodies, however their keys were ordered, share an entry."""
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """``root/<2 hex>/<hash>.json`` holding ``{"request_hash", "judge", "response"}``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored entry, or None when there is none (an unreadable file counts as none and is rewritten)."""
        path = self.path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable judge cache entry %s (%s)", path, e)
            return None

    def put(self, key: str, entry: dict) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
