"""An OpenAI-compatible judge (``mmalign.judge.JudgeClient``) as the ``official.judge.Judge`` the judged
benchmarks call.

The official scorers write messages as ``{"role", "content": str, "images": [reference, ...]}`` with the
benchmark's own image references (MM-AlignBench's base64 cell); here they become OpenAI messages with the images
as PNG data URLs, read by the same rule as the benchmark's images (a file name is under the image folder). The
judge id is the client's, and its settings (model, endpoint, temperature, max tokens, seed) are recorded with
every judged score.
"""
from __future__ import annotations

from pathlib import Path

from mmalign.eval.official.images import inline_ref, open_images
from mmalign.eval.official.judge import Judge
from mmalign.judge.client import JudgeClient, JudgeConfig
from mmalign.judge.messages import user_message


def client_judge(cfg: JudgeConfig, image_root: Path | None = None) -> Judge:
    client = JudgeClient(cfg)
    settings = {k: v for k, v in client.judge.items() if k != "id"}

    def ask(messages: list[dict]) -> str:
        return client.chat([openai_message(m, image_root) for m in messages]).text

    return Judge(ask, client.judge["id"], settings)


def openai_message(message: dict, image_root: Path | None) -> dict:
    refs = [r for r in message.get("images", []) if r not in (None, "")]
    if not refs:
        return {"role": message["role"], "content": message["content"]}
    where = {"id": "judge message"}
    images = open_images([inline_ref(where, "images", r, image_root) for r in refs])
    return {"role": message["role"], "content": user_message(message["content"], images)["content"]}
