"""Image references in data files, and the one place they become images.

A reference may be a PIL image; ``bytes``; an HF image dict ``{"bytes": ..., "path": ...}`` (or verl's
``{"image": ...}``); a ``data:image/...;base64,`` URL or a plain base64 string; a path, relative to the data
file's folder or absolute; or an ``http(s)://`` URL. Local references are decoded when a file is read, so a
broken one is reported with the file's other problems. A URL becomes a ``RemoteImage``, fetched only when it is
opened (``open_image``); offline, opening raises an ``MMAlignError`` naming the record and field. Writers never
fetch: a ``RemoteImage`` is written back as its URL. Decoded images are RGB.
"""
from __future__ import annotations

import base64
import io
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmalign.errors import MMAlignError

REMOTE_TIMEOUT_S = 10.0
# a plain base64 image is long and has no dot; shorter or dotted strings are file names
_BASE64 = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")


@dataclass
class RemoteImage:
    url: str
    where: str                          # "FILE:LINE: field 'images': image 0", for the error raised offline
    timeout: float = REMOTE_TIMEOUT_S

    def open(self) -> Image.Image:
        """The image, fetched now (every call fetches; keep the result)."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                return decode(response.read())
        except (OSError, ValueError) as e:  # refused connections, timeouts and undecodable bytes are OSErrors
            raise MMAlignError(f"{self.where}: cannot open {self.url} ({e})") from None


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def image_ref(ref, root: Path, where: str) -> Image.Image | RemoteImage:
    """The image a reference names (a ``RemoteImage`` for a URL). Raises ``FileNotFoundError`` for a missing
    file, ``OSError``/``ValueError`` for undecodable data, ``TypeError`` for anything that is no reference."""
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path") or ref.get("image")
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, str) and ref.startswith(("http://", "https://")):
        return RemoteImage(ref, where)
    if isinstance(ref, str) and ref.startswith("data:"):
        ref = base64.b64decode(ref.partition(",")[2], validate=True)
    elif isinstance(ref, str) and _BASE64.fullmatch(ref):
        ref = base64.b64decode(ref, validate=True)
    if isinstance(ref, bytes):
        return decode(ref)
    if not isinstance(ref, str):
        raise TypeError(ref)
    path = root / ref
    if not path.is_file():
        raise FileNotFoundError(str(path))
    with Image.open(path) as im:
        return im.convert("RGB")


def load_images(refs: list, root: Path, name: str, where: str) -> tuple[list, list[str]]:
    """The images of one field, and a problem (``field 'x': image k: ...``) for each reference that fails."""
    images, problems = [], []
    for k, ref in enumerate(refs):
        try:
            images.append(image_ref(ref, root, f"{where}: field '{name}': image {k}"))
        except FileNotFoundError as e:
            problems.append(f"field '{name}': image {k}: file not found: {e.args[0]}")
        except (OSError, ValueError) as e:
            problems.append(f"field '{name}': image {k}: not a decodable image ({e})")
        except TypeError:
            problems.append(f"field '{name}': image {k}: a {type(ref).__name__}, "
                            "expected a path, a URL, a data: URI, base64, bytes or a PIL image")
    return images, problems


def open_image(image: Image.Image | RemoteImage) -> Image.Image:
    return image.open() if isinstance(image, RemoteImage) else image


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class ImageSink:
    """Where a writer puts images: PNG files in ``images/`` beside a JSON or JSONL file (the reference is the
    path relative to the file), or PNG bytes in an HF image dict inside a parquet file. A ``RemoteImage``
    stays its URL. Names carry the file's stem, so several files can share the folder."""

    def __init__(self, path: Path):
        self.folder, self.stem, self.inline = path.parent, path.stem, path.suffix == ".parquet"

    def ref(self, image: Image.Image | RemoteImage, name: str) -> str | dict:
        if isinstance(image, RemoteImage):
            return {"bytes": None, "path": image.url} if self.inline else image.url
        if self.inline:
            return {"bytes": png_bytes(image), "path": None}
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        rel = f"images/{self.stem}-{name}.png"
        image.save(self.folder / rel)
        return rel

    def refs(self, images: list, name: str) -> list:
        return [self.ref(image, f"{name}-{k}") for k, image in enumerate(images)]
