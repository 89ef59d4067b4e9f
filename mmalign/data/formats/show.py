"""An HTML page of a data file's records: each image inline, the prompt, and chosen beside rejected.

Every piece of text from the file is HTML-escaped, so a response holding markup shows as text. Images are
thumbnails inlined as base64 PNG; a URL image is linked, not fetched (the browser loads it).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from mmalign.data.formats.images import RemoteImage, png_bytes
from mmalign.data.formats.messages import placeholder_text
from mmalign.data.formats.verl import PromptRecord

THUMBNAIL = 384
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}
.record{border-top:1px solid #ccc;padding:1em 0}.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.chosen{background:#eefbea}.rejected{background:#fdecec}.chosen,.rejected,.truth{padding:.5em;white-space:pre-wrap}
.prompt{white-space:pre-wrap}img{max-width:384px;max-height:384px;margin:.2em}.meta{color:#666;font-size:90%}"""


def render(records: list, title: str, limit: int) -> str:
    shown = records[:limit]
    body = "".join(_record(rec) for rec in shown)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{len(shown)} of {len(records)} record(s)</p>{body}</body></html>")


def write_page(records: list, title: str, out: Path, limit: int) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(records, title, limit))
    return out


def _image(image) -> str:
    if isinstance(image, RemoteImage):
        url = html.escape(image.url, quote=True)
        return f"<a href='{url}'><img src='{url}' alt='{url}'></a>"
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL))
    return f"<img src='data:image/png;base64,{base64.b64encode(png_bytes(thumb)).decode()}'>"


def _prompt(prompt) -> str:
    if isinstance(prompt, str):
        return html.escape(prompt)
    return "<br>".join(f"<b>{html.escape(m['role'])}:</b> {html.escape(placeholder_text(m['content']))}"
                       for m in prompt)


def _record(rec) -> str:
    images = "".join(_image(image) for image in rec.images)
    head = f"<div class='record'><h3>{html.escape(rec.id)}</h3><div>{images}</div>" \
           f"<div class='prompt'>{_prompt(rec.prompt)}</div>"
    if isinstance(rec, PromptRecord):
        videos = "".join(f"<div class='meta'>video: {html.escape(v)}</div>" for v in rec.videos)
        truth = html.escape(str(rec.ground_truth))
        return f"{head}{videos}<div class='truth'><b>ground truth:</b> {truth}</div></div>"
    facts = [f"{name}: {value}" for name, value in (("reward margin", rec.reward_margin), ("scores", rec.scores),
                                                    ("task", rec.task or None)) if value is not None]
    meta = f"<div class='meta'>{html.escape('; '.join(facts))}</div>" if facts else ""
    return (f"{head}{meta}<div class='pair'><div class='chosen'><b>chosen</b>\n{html.escape(rec.chosen)}</div>"
            f"<div class='rejected'><b>rejected</b>\n{html.escape(rec.rejected)}</div></div></div>")
