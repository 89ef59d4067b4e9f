"""OpenAI chat messages with images: the wire format both the judge client and ``mmalign serve`` speak.

A message is ``{"role": ..., "content": str | [block, ...]}``; a block is ``{"type": "text", "text": ...}`` or
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``. Images always travel as base64 PNG
data URLs, so a request holds its image bytes and its hash changes when a pixel does.
"""
from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

ImageLike = Image.Image | str | Path  # a PIL image or an image file's path


def image_data_url(image: ImageLike) -> str:
    """``data:image/png;base64,...`` for a PIL image or an image file (re-encoded as PNG)."""
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            image = opened.copy()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_block(image: ImageLike) -> dict:
    return {"type": "image_url", "image_url": {"url": image_data_url(image)}}


def user_message(text: str, images: Sequence[ImageLike] = ()) -> dict:
    """One user turn: the images first, then the text (the order the lab's prompts use)."""
    return {"role": "user", "content": [*map(image_block, images), {"type": "text", "text": text}]}


def decode_data_url(url: str) -> Image.Image:
    """The RGB image in a ``data:image/...;base64,`` URL; ``ValueError`` saying what is wrong otherwise."""
    header, comma, payload = url.partition(",")
    if not (url.startswith("data:image/") and comma and header.endswith(";base64")):
        raise ValueError("expected a data:image/...;base64, URL")
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ValueError("the data URL's payload is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.convert("RGB")
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a decodable image ({e})") from None
