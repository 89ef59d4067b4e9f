"""Where each benchmark keeps an item's image(s), and opening them.

A benchmark's ``images(item, root)`` returns the item's ``ImageRef``s: a file (a ``Path`` under ``root``, the
image folder the user gives), or an inline reference (base64, a ``data:`` URL, an HF image dict, a URL; see
``mmalign.data.formats.images``). Layouts:

| benchmark | field | reference |
|---|---|---|
| POPE, CHAIR | ``image`` | COCO file name, under the COCO val2014 (or train2014) folder |
| AMBER | ``image`` | ``AMBER_k.jpg`` under AMBER's image folder |
| MME | ``image`` | ``<subtask>/<name>`` or ``<subtask>/images/<name>`` under ``MME_Benchmark_release_version`` |
| MMBench, MM-AlignBench | ``image`` | base64 in the TSV; a short cell is the ``index`` of the row holding the image |
| Object HalBench | ``image`` | base64 in the question file |
| MMHal-Bench | ``image_src`` | the URL's file name under the image folder; without a folder, the URL itself |
| HallusionBench | ``filename`` | path under the image folder; none when ``visual_input`` is 0 |
| VLGuard | ``image`` | path under the VLGuard test image folder |
| MM-RLHF-RewardBench | ``image`` | path under the dataset folder (``video`` rows are not supported) |
| VL-RewardBench, LLaVA-Bench-in-the-Wild | ``image`` | a path under the image folder or any inline reference |

A file name needs the image folder (``root``; ``--images DIR``) and raises MMAlignError without one; MMHal-Bench
without one fetches its URLs. Paths are checked for every item before a run starts (``missing``), so a missing
file stops it at once with the file, item and field named; images are decoded only when a batch needs them
(``open_images``).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmalign.data.formats.images import image_ref, open_image
from mmalign.errors import MMAlignError

TSV_REF_MAX = 64      # VLMEvalKit: an image cell this short names the row whose image it shares
_BASE64 = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")


@dataclass(frozen=True)
class ImageRef:
    item_id: object
    field: str
    value: object      # a Path for a file; else the inline reference as the file holds it

    @property
    def where(self) -> str:
        return f"item {self.item_id}: field '{self.field}'"


def _value(item: dict, name: str):
    if item.get(name) in (None, ""):
        raise MMAlignError(f"item {item['id']}: field '{name}': missing (no image reference)")
    return item[name]


def _file(item: dict, name: str, value, root: Path | None) -> ImageRef:
    if root is None:
        raise MMAlignError(f"item {item['id']}: field '{name}': {value!r} is a file name; give the image folder "
                           "(--images DIR)")
    return ImageRef(item["id"], name, root / str(value))


def file_field(name: str = "image"):
    """Accessor for a file name relative to the image folder."""
    def images(item: dict, root: Path | None) -> list[ImageRef]:
        return [_file(item, name, _value(item, name), root)]
    return images


def inline_field(name: str = "image"):
    """Accessor for a base64 / data-URL / HF-dict reference, or a path relative to the image folder; a TSV
    cell may also hold a Python list of such references (VLMEvalKit's multi-image rows)."""
    def images(item: dict, root: Path | None) -> list[ImageRef]:
        value = _value(item, name)
        try:
            values = ast.literal_eval(value) if isinstance(value, str) and value.startswith("[") else [value]
        except (ValueError, SyntaxError):
            raise MMAlignError(f"item {item['id']}: field '{name}': starts with '[' but is not a list") from None
        return [inline_ref(item, name, v, root) for v in values]
    return images


def inline_ref(item: dict, name: str, value, root: Path | None) -> ImageRef:
    """One reference as ``image_ref`` reads it: a string that is no URL and no base64 is a file name."""
    is_file = isinstance(value, str) and not value.startswith(("data:", "http://", "https://")) \
        and not _BASE64.fullmatch(value)
    return _file(item, name, value, root) if is_file else ImageRef(item["id"], name, value)


def subtask_file(item: dict, root: Path | None) -> list[ImageRef]:
    """The release keeps some subtasks' images in ``<subtask>/`` and others in ``<subtask>/images/``."""
    ref = _file(item, "image", f"{item['subtask']}/{item['image']}", root)
    inner = _file(item, "image", f"{item['subtask']}/images/{item['image']}", root)
    return [inner if not ref.value.is_file() and inner.value.is_file() else ref]


def url_file_name(item: dict, root: Path | None) -> list[ImageRef]:
    """The image folder holds each image under its URL's file name; without a folder the URL is fetched."""
    url = str(_value(item, "image_src"))
    return [ImageRef(item["id"], "image_src", url) if root is None else
            _file(item, "image_src", url.rsplit("/", 1)[-1], root)]


def figure_file(item: dict, root: Path | None) -> list[ImageRef]:
    if str(item.get("visual_input")) == "0":       # a question asked without a figure
        return []
    return file_field("filename")(item, root)


def image_rows_only(item: dict, root: Path | None) -> list[ImageRef]:
    if item.get("video"):
        raise MMAlignError(f"item {item['id']}: field 'video': {item['video']}: video rows cannot be run (no "
                           "video decoding); leave them out of the file to score the image categories")
    return file_field("image")(item, root)


def resolve_tsv_refs(rows: list[dict]) -> list[dict]:
    """VLMEvalKit TSVs store an image once: a row whose image cell is at most 64 characters and equals another
    row's ``index`` shares that row's image. Such cells are replaced by the image; others are left as they are."""
    by_index = {r["index"]: r.get("image") for r in rows}
    out = []
    for r in rows:
        cell = r.get("image")
        shared = isinstance(cell, str) and len(cell) <= TSV_REF_MAX and cell != r["index"] and cell in by_index
        out.append(r | {"image": by_index[cell]} if shared else r)
    return out


def missing(refs: list[ImageRef]) -> list[str]:
    """A problem for every file reference whose file does not exist."""
    return [f"{r.where}: image file not found: {r.value}" for r in refs
            if isinstance(r.value, Path) and not r.value.is_file()]


def open_images(refs: list[ImageRef]) -> list[Image.Image]:
    """The RGB images; an undecodable or unreachable one raises MMAlignError naming the item, field and file."""
    out = []
    for r in refs:
        try:
            value = str(r.value) if isinstance(r.value, Path) else r.value
            out.append(open_image(image_ref(value, Path("."), r.where)))
        except FileNotFoundError:
            raise MMAlignError(f"{r.where}: image file not found: {r.value}") from None
        except (OSError, ValueError) as e:
            raise MMAlignError(f"{r.where}: not a decodable image ({_short(r.value)}: {e})") from None
        except TypeError:
            raise MMAlignError(f"{r.where}: a {type(r.value).__name__} is not an image reference") from None
    return out


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:40] + "..."
