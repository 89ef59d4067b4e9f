"""A run's per-item outputs in ``responses.jsonl``, appended as they are produced so that a stopped run resumes
with only the missing items.

Line 1 is the header: what the outputs depend on (benchmark, version, model fingerprint, data, image folder,
generation settings or reward id). A file whose header differs from the run's is refused, never mixed. Every
other line is ``{"i": position, "id": item id, "response": ...}``; an item is done when its position holds the
same id (a data file that changed under the cache is refused too). A last line cut short by a crash is dropped
and its item produced again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mmalign.errors import MMAlignError


def model_fingerprint(model: str) -> str:
    """A short hash of a model folder's files (relative name, size, modification time): a model retrained
    into the same folder gets a new one. A hub id is its own fingerprint."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    stats = sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in path.rglob("*") if f.is_file())
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


class ResponseCache:
    """``done`` maps positions to cached outputs; ``add`` appends new ones and flushes at once."""

    def __init__(self, path: str | Path, header: dict, ids: list):
        self.path, self.header = Path(path), header
        self.done: dict[int, object] = {}
        if self.path.exists():
            self._read([str(i) for i in ids])
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": header}) + "\n")

    def _read(self, ids: list[str]) -> None:
        complete, _, cut = self.path.read_text(encoding="utf-8").rpartition("\n")
        lines = complete.split("\n")
        self._check_header(lines[0])
        for n, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
                i, item_id, response = rec["i"], rec["id"], rec["response"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise MMAlignError(f"{self.path}:{n}: not a response record") from None
            if not (isinstance(i, int) and 0 <= i < len(ids)) or str(item_id) != ids[i]:
                raise MMAlignError(f"{self.path}:{n}: item {item_id!r} at position {i} is not in this data "
                                   "(the data file changed since these responses were written); use another out "
                                   "folder or delete the file")
            self.done[i] = response
        if cut:         # the last line was cut short by a crash: drop it, its item is produced again
            self.path.write_text(complete + "\n", encoding="utf-8")

    def _check_header(self, first: str) -> None:
        try:
            found = json.loads(first)["header"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise MMAlignError(f"{self.path}: line 1 is not a responses header; not a file this command "
                               "wrote") from None
        differ = [k for k in sorted(set(found) | set(self.header)) if found.get(k) != self.header.get(k)]
        if differ:
            detail = "; ".join(f"{k}: cached {found.get(k)!r}, this run {self.header.get(k)!r}" for k in differ)
            raise MMAlignError(f"{self.path} holds responses of another run ({detail}); they are not mixed: "
                               "use another out folder or delete the file")

    def add(self, outputs: list[tuple[int, object, object]]) -> None:
        """Append ``(position, item id, output)`` records."""
        with self.path.open("a", encoding="utf-8") as f:
            for i, item_id, response in outputs:
                f.write(json.dumps({"i": i, "id": item_id, "response": response}) + "\n")
                self.done[i] = response
