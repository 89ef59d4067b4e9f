"""Image references in data files, and the one place they become images.

A reference may be a PIL image; ``bytes``; an HF image dict ``{"bytes": ..., "path": ...}`` (or verl's
``{"image": ...}``); a ``data:image/...;base64,`` URL or a plain base64 string; a path, relative to the data
file's folder or absolute; or an ``http(s)://`` URL. Local references are decoded when a file is read, so a
broken one is reported with the file's other problems. A URL becomes a ``RemoteImage``, fetched only when it is
opened (``open_image``); offline, opening raises an ``MMAlignError`` naming the record and field. Writers never
fetch: a ``RemoteImage`` is written back as its URL. Decoded images are RGB.

An image above ``max_pixels()`` (the environment variable ``MMALIGN_MAX_IMAGE_PIXELS``, by default PIL's own
limit) is refused from its header, before it is decoded, with an ``ImageTooLarge`` naming its size, in place of
PIL's decompression-bomb warning. PIL refuses images above twice its own ``Image.MAX_IMAGE_PIXELS`` whatever the
variable says.
"""
from __future__ import annotations

import base64
import io
import os
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmalign.errors import MMAlignError

REMOTE_TIMEOUT_S = 10.0
MAX_PIXELS_ENV = "MMALIGN_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485       # PIL's Image.MAX_IMAGE_PIXELS, above which it warns
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


class ImageTooLarge(ValueError):
    """An image with more pixels than ``max_pixels()``."""


def max_pixels() -> int:
    return int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))


def decode(data: bytes) -> Image.Image:
    return _rgb(io.BytesIO(data))


def _rgb(source) -> Image.Image:
    """The RGB image of a file or buffer, its size checked from the header before anything is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # the check below says it better
        try:
            im = Image.open(source)
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(f"{e.args[0].split(',')[0]} (PIL's limit)") from None
    with im:
        w, h = im.size
        if w * h > max_pixels():
            raise ImageTooLarge(f"{w}x{h} = {w * h:,} pixels, above the limit of {max_pixels():,} "
                                f"(set {MAX_PIXELS_ENV} to allow more)")
        return im.convert("RGB")


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
    return _rgb(path)


def load_images(refs: list, root: Path, name: str, where: str) -> tuple[list, list[str]]:
    """The images of one field, and a problem (``field 'x': image k: ...``) for each reference that fails."""
    images, problems = [], []
    for k, ref in enumerate(refs):
        try:
            images.append(image_ref(ref, root, f"{where}: field '{name}': image {k}"))
        except FileNotFoundError as e:
            problems.append(f"field '{name}': image {k}: file not found: {e.args[0]}")
        except ImageTooLarge as e:
            problems.append(f"field '{name}': image {k}: too large: {e}")
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
