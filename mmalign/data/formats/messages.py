"""Prompts in their three shapes: a string (images go first), TRL messages whose content is typed blocks
(``{"type": "image"}``, ``{"type": "video"}``, ``{"type": "text", "text": ...}``), and chat turns whose text marks
image and video positions with ``<image>`` / ``<video>`` (LLaMA-Factory, ms-swift, LLaVA, verl/EasyR1).

Turning placeholder text into blocks and back is exact, so a prompt survives any number of conversions.
"""
from __future__ import annotations

import re

IMAGE, VIDEO = "<image>", "<video>"
_PLACEHOLDER = re.compile(f"({IMAGE}|{VIDEO})")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}   # other roles keep their names
TO_SHAREGPT = {v: k for k, v in SHAREGPT_ROLES.items()}


def blocks(text: str) -> list[dict]:
    """Placeholder text as content blocks."""
    out = []
    for part in _PLACEHOLDER.split(text):
        if part in (IMAGE, VIDEO):
            out.append({"type": part[1:-1]})
        elif part:
            out.append({"type": "text", "text": part})
    return out


def placeholder_text(content: str | list[dict]) -> str:
    """Content (a string or blocks) as text with placeholders."""
    if isinstance(content, str):
        return content
    return "".join(f"<{b['type']}>" if b.get("type") in ("image", "video") else b.get("text") or "" for b in content)


def turns_to_prompt(turns: list[tuple[str, str]]) -> list[dict]:
    return [{"role": role, "content": blocks(text)} for role, text in turns]


def prompt_to_turns(prompt: str | list[dict], n_images: int) -> list[tuple[str, str]]:
    """``(role, placeholder text)`` turns; a string prompt is one user turn with its images first."""
    if isinstance(prompt, str):
        return [("user", IMAGE * n_images + prompt)]
    return [(m["role"], placeholder_text(m["content"])) for m in prompt]


def question(prompt: str | list[dict]) -> str | None:
    """The prompt as one question without placeholders (flat formats put the image before it), or None when
    it is not a single user turn."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return _PLACEHOLDER.sub("", placeholder_text(prompt[0]["content"])).strip()
    return None


def prompt_texts(prompt: str | list[dict]) -> list[str]:
    """The strings of a prompt that reach the tokenizer: the string, or each message's role (chat templates write
    it out) and its string content or text blocks."""
    if isinstance(prompt, str):
        return [prompt]
    return [t for m in prompt for t in [m.get("role") or ""] + ([m["content"]] if isinstance(m["content"], str) else
                                        [b["text"] for b in m["content"] if isinstance(b.get("text"), str)])]


def text_problems(name: str, text: str) -> list[str]:
    """What keeps ``text`` (of field ``name``) from reaching a tokenizer as it is: a lone surrogate (what JSON's
    ``"\\ud800"`` escapes decode to; tokenizers refuse it), or an image/video placeholder, which a processor expands
    into image tokens with no image behind them (images are a field; a message prompt places them with blocks)."""
    out = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        out.append(f"field '{name}': not valid Unicode text (a lone surrogate at character {e.start})")
    if m := _PLACEHOLDER.search(text):
        out.append(f"field '{name}': the text holds the placeholder {m.group()} at character {m.start()}; give "
                   "images in the images field (a message prompt places them with {\"type\": \"image\"} blocks)")
    return out


def is_messages(v) -> bool:
    """A list of ``{"role", "content"}`` messages whose content is a string or a list of blocks."""
    return isinstance(v, list) and all(isinstance(m, dict) and (isinstance(m.get("content"), str) or isinstance(
        m.get("content"), list) and all(isinstance(b, dict) for b in m["content"])) for m in v)


def clean(messages: list[dict]) -> list[dict]:
    """Messages without the null keys a parquet struct adds to blocks (``{"type": "image", "text": None}``)."""
    return [{**m, "content": m["content"] if isinstance(m["content"], str) else
             [{k: v for k, v in b.items() if v is not None} for b in m["content"]]} for m in messages]


def parse_turns(messages, name: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Turns from ``{"from", "value"}`` (ShareGPT, roles mapped) or ``{"role", "content"}`` messages with string
    text, and a problem for each message that is neither."""
    if not isinstance(messages, list) or not messages:
        return [], [f"field '{name}': missing or not a non-empty list of messages"]
    turns, problems = [], []
    for i, m in enumerate(messages):
        role, text = _role_text(m)
        if role is None:
            problems.append(f"field '{name}': message {i}: expected {{\"from\", \"value\"}} or "
                            "{\"role\", \"content\"} with string values")
        else:
            turns.append((role, text))
    return turns, problems


def _role_text(m) -> tuple[str | None, str | None]:
    if isinstance(m, dict) and isinstance(m.get("from"), str) and isinstance(m.get("value"), str):
        return SHAREGPT_ROLES.get(m["from"], m["from"]), m["value"]
    if isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str):
        return m["role"], m["content"]
    return None, None


def message_text(m, name: str) -> tuple[str | None, list[str]]:
    """The text of one ``{"from", "value"}`` / ``{"role", "content"}`` message (LLaMA-Factory's chosen and
    rejected, LLaVA-RLHF's outputs)."""
    _, text = _role_text(m)
    if text is None:
        return None, [f"field '{name}': expected a message {{\"from\", \"value\"}} or {{\"role\", \"content\"}}"]
    return text, []


def sharegpt(turns: list[tuple[str, str]]) -> list[dict]:
    return [{"from": TO_SHAREGPT.get(role, role), "value": text} for role, text in turns]
