"""Scorers backed by a model outside the policy: a reward model and an external judge, each any callable.

``reward_model`` wraps ``reward(images, prompt, response) -> float`` (the reward-model issue provides trained
ones). ``judge`` rates each response on its own, as Silkie/VLFeedback's GPT-4V annotator does (Li et al. 2023;
ALGORITHMS.md §5.1), through any ``client(messages) -> text`` speaking OpenAI chat messages (images as base64
PNG data URLs) and a ``parse(text) -> float | None`` that reads the rating; a reply that does not parse scores
NaN, which ``label_pairs`` leaves out of the ranking and counts.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable

from PIL import Image

from mmalign.construct.scorers.scores import Scores

JUDGE_TEMPLATE = (
    "You are rating an AI assistant's answer to a question about the image above.\n"
    "Question: {prompt}\nAnswer: {response}\n"
    "Rate the answer from 1 to 10 for visual faithfulness (every object and attribute it names is in the image) "
    "and helpfulness (it answers the question completely). Reply with one line: Rating: <1-10>."
)


def reward_model(example: dict, responses: list[str], *, reward: Callable[[list, object, str], float]) -> Scores:
    """``reward(images, prompt, response)`` for each response."""
    return Scores([float(reward(example["images"], example["prompt"], r)) for r in responses])


def judge(example: dict, responses: list[str], *, client: Callable[[list[dict]], str],
          parse: Callable[[str], float | None], judge_id: str, template: str = JUDGE_TEMPLATE) -> Scores:
    """The judge's parsed rating of each response (NaN when it does not parse). ``template`` is formatted with
    the prompt's text and the response. Details: ``judge_id``, the raw reply and ``parse_failed``."""
    values, details = [], []
    for response in responses:
        text = template.format(prompt=prompt_text(example["prompt"]), response=response)
        content = [{"type": "image_url", "image_url": {"url": data_url(im)}} for im in example["images"]]
        reply = client([{"role": "user", "content": content + [{"type": "text", "text": text}]}])
        rating = parse(reply)
        values.append(float("nan") if rating is None else float(rating))
        details.append({"judge_id": judge_id, "reply": reply, "parse_failed": rating is None})
    return Scores(values, details)


def prompt_text(prompt: str | list[dict]) -> str:
    """A string prompt, or the text blocks of a message-list prompt joined."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt:
        content = message["content"]
        parts += [content] if isinstance(content, str) else [b["text"] for b in content if b.get("type") == "text"]
    return " ".join(parts)


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
