"""The lmms-eval model adapter: ``lmms-eval --model mmalign --model_args pretrained=DIR[,dtype=bfloat16]``
evaluates any mmalign model folder (``models.load.load_model``) on any lmms-eval task whose docs give text and
images (``doc_to_text`` / ``doc_to_visual``).

* ``generate_until``: requests are grouped by their generation settings and run through
  ``models.generate.sample_responses`` (the batched generation ``mmalign eval`` uses), greedy unless the
  request samples (``do_sample``, or a positive ``temperature`` without it), then with ``temperature`` /
  ``top_p`` and seed 0; the text is cut at the first of the request's ``until`` strings.
* ``loglikelihood``: ``log p(continuation | context)`` with the continuation as the whole assistant turn (its
  leading whitespace dropped, the end-of-turn token included, as mmalign scores a response), and whether every
  one of its tokens is the greedy one.
* Multi-round generation is not supported and says so.

Registered twice, for both of lmms-eval's registries: ``@register_model("mmalign")`` when this module is
imported, and the ``lmms_eval.models`` entry point (``manifest.manifests``) that lmms-eval loads by itself.
"""
from __future__ import annotations

import json

import torch
from PIL import Image

try:
    from lmms_eval.api.model import lmms
    from lmms_eval.api.registry import register_model
except ImportError as e:
    raise ImportError("mmalign's lmms-eval adapter needs lmms-eval, which is not installed (or one of its own "
                      "dependencies is missing): pip install lmms-eval; docs/evaluation.md says what that pulls "
                      f"in ({e})") from e

from mmalign.models.generate import sample_responses
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import token_logps


@register_model("mmalign")
class MMAlignLMM(lmms):
    is_simple = True

    def __init__(self, pretrained: str, batch_size: int | str = 16, dtype: str = "float32", device: str = "auto",
                 max_batch_size: int | None = None):
        # max_batch_size: lmms-eval passes it for automatic batch sizing, which this adapter does not do
        super().__init__()
        model, self.processor = load_model(ModelConfig(path=str(pretrained), dtype=dtype))
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device in ("auto", None) else device
        self.model = model.to(device).eval()
        self.batch_size = int(batch_size)

    def _examples(self, requests, continuation: bool = False) -> list[dict]:
        out = []
        for context, target, doc_to_visual, doc_id, task, split in (r.args for r in requests):
            doc = self.task_dict[task][split][doc_id]
            example = {"images": [_image(v) for v in doc_to_visual(doc) or []], "prompt": context}
            if continuation:
                example["response"] = (target if isinstance(target, str) else target(doc)).lstrip()
            out.append(example)
        return out

    def generate_until(self, requests) -> list[str]:
        out: list[str] = [""] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        for key, idx in groups.items():
            gen = json.loads(key)
            examples = self._examples([requests[i] for i in idx])
            until = gen.get("until") or []
            until = [until] if isinstance(until, str) else until
            samples = sample_responses(self.model, self.processor, examples, temperature=_temperature(gen),
                                       top_p=float(gen.get("top_p") or 1.0), batch_size=self.batch_size,
                                       max_new_tokens=int(gen.get("max_new_tokens", 256)),
                                       stop=[u for u in until if u], desc="mmalign generate")
            for i, texts in zip(idx, samples.texts):
                out[i] = _cut(texts[0], until)     # generation stopped at the string; lmms-eval drops it
        return out

    @torch.no_grad()
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        out = []
        for start in range(0, len(requests), self.batch_size):
            examples = self._examples(requests[start:start + self.batch_size], continuation=True)
            batch = build_inputs(self.processor, examples).to(self.model.device)
            labels = batch.pop("labels")
            logits = self.model(**batch).logits
            logp, mask = token_logps(logits, labels)
            greedy = (logits[:, :-1].argmax(-1) == labels[:, 1:]) | ~mask
            out += [(float(lp), bool(g)) for lp, g in zip(logp.sum(-1), greedy.all(-1))]
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the mmalign adapter does not run multi-round tasks")


def _image(visual) -> Image.Image:
    if isinstance(visual, Image.Image):
        return visual.convert("RGB")
    raise TypeError(f"the mmalign adapter takes PIL images from doc_to_visual, got {type(visual).__name__} "
                    "(video and audio tasks are not supported)")


def _temperature(gen: dict) -> float:
    """0 (greedy) unless the request samples: ``do_sample`` true, or absent with a positive temperature."""
    temperature = float(gen.get("temperature") or 0.0)
    return temperature if gen.get("do_sample", temperature > 0) else 0.0


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text
