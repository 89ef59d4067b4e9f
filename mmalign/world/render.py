"""Rendering scenes to images. Each object is drawn through its own mask, so its box is the exact pixel extent."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

from mmalign.world.language import ALL_COLOURS
from mmalign.world.scenes import Scene, WorldConfig


def _star(cx, cy, r, points=5, inner=0.45):
    pts = []
    for k in range(2 * points):
        rad = r if k % 2 == 0 else r * inner
        a = -math.pi / 2 + k * math.pi / points
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, category: str, cx: float, cy: float, r: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if category == "circle":
        draw.ellipse(box, fill=255)
    elif category == "square":
        s = 0.82 * r
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=255)
    elif category == "triangle":
        draw.polygon([(cx, cy - r), (cx - 0.95 * r, cy + 0.8 * r), (cx + 0.95 * r, cy + 0.8 * r)], fill=255)
    elif category == "star":
        draw.polygon(_star(cx, cy, r), fill=255)
    elif category == "cross":
        w = 0.33 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=255)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=255)
    elif category == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=255)
    elif category == "heart":
        q = 0.5 * r
        draw.ellipse((cx - r, cy - r + 0.1 * r, cx, cy + 0.1 * r), fill=255)
        draw.ellipse((cx, cy - r + 0.1 * r, cx + r, cy + 0.1 * r), fill=255)
        draw.polygon([(cx - r + 0.05 * r, cy - 0.25 * r + q * 0.2), (cx + r - 0.05 * r, cy - 0.25 * r + q * 0.2), (cx, cy + r)], fill=255)
    elif category == "ring":
        draw.ellipse(box, outline=255, width=max(2, int(r / 3)))
    elif category == "moon":
        draw.ellipse(box, fill=255)
        draw.ellipse((cx - r + 0.55 * r, cy - r - 0.1 * r, cx + r + 0.55 * r, cy + r - 0.1 * r), fill=0)
    elif category == "arrow":
        w = 0.3 * r
        draw.polygon([(cx - r, cy - w), (cx, cy - w), (cx, cy - r), (cx + r, cy), (cx, cy + r), (cx, cy + w),
                      (cx - r, cy + w)], fill=255)
    else:
        raise ValueError(f"no renderer for category '{category}'")


def object_mask(category: str, center: tuple[float, float], radius: float, size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    _draw_shape(ImageDraw.Draw(mask), category, center[0], center[1], radius)
    return mask


def object_colour(colour: str, background: tuple[int, int, int], faint: bool, contrast: float) -> tuple[int, int, int]:
    rgb = ALL_COLOURS[colour]
    if not faint:
        return rgb
    return tuple(int(round(b + contrast * (c - b))) for c, b in zip(rgb, background))


def render(scene: Scene, cfg: WorldConfig) -> Image.Image:
    """Draw ``scene`` and record each object's exact box (x1, y1, x2, y2; x2/y2 exclusive) on the object."""
    img = Image.new("RGB", (cfg.image_size, cfg.image_size), scene.background)
    for o in scene.objects:
        mask = object_mask(o.category, o.center, o.radius, cfg.image_size)
        img.paste(object_colour(o.colour, scene.background, o.faint, cfg.faint_contrast), mask=mask)
        o.box = mask.getbbox()
    return img
