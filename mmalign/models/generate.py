"""Generation: batched sampling (greedy as its temperature-0 case) and next-token answer probabilities.

Sampling runs Hugging Face ``generate`` (KV cache, its temperature and top-p warpers, its stop at the end-of-turn
token) with the draw itself made by the Gumbel-max trick: ``argmax_v(s_v + g_v)`` with ``g_v`` standard Gumbel
noise is a draw from ``softmax(s)`` — the distribution ``do_sample=True`` draws from. The noise comes from one
generator per row, seeded by ``(seed, prompt index, sample index)``, so sample ``k`` of prompt ``i`` is the same
whatever the batch size or the other prompts in its batch (RLAIF-V samples its candidates "with different seeds
under the same decoding setup"; here each candidate has its own). ``torch.multinomial`` over a batch would tie
every sample to its batch-mates.

Stop strings end a completion once its *decoded* text holds one of them (``StopOnStrings``); the completion keeps
the tokens that spelled it, as it keeps its end-of-turn token. Transformers' own ``stop_strings`` matches token
strings, which differ from the decoded text for word-level tokenizers (the lab's decodes "< answer >" with spaces).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.generation import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from mmalign.errors import MMAlignError
from mmalign.models.inputs import build_inputs


@dataclass
class Samples:
    """``n`` completions per prompt, in the prompts' order. ``token_ids`` are the generated ids up to and
    including the end-of-turn token (or the token that completed a stop string); ``stopped`` is False where a
    completion ran into ``max_new_tokens``."""
    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    stopped: list[list[bool]]

    @property
    def lengths(self) -> list[list[int]]:
        return [[len(ids) for ids in row] for row in self.token_ids]


class RowGumbelNoise(LogitsProcessor):
    """Adds standard Gumbel noise ``-log(E)``, ``E ~ Exp(1)``, drawn for each row from that row's generator."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        noise = torch.stack([torch.empty(scores.shape[1], device=scores.device).exponential_(generator=g)
                             for g in self.generators])
        # E = 0 would give +inf, and +inf on a token top-p set to -inf gives NaN
        return scores - noise.clamp_min_(torch.finfo(noise.dtype).tiny).log()


def row_seed(seed: int, prompt: int, sample: int) -> int:
    return int(np.random.SeedSequence([seed, prompt, sample]).generate_state(1, dtype=np.uint64)[0])


class StopOnStrings(StoppingCriteria):
    """Ends a row once the text it generated after column ``start`` (the prompt's width), decoded, holds one of
    ``stop``."""

    def __init__(self, tokenizer, stop: Sequence[str], start: int):
        self.tokenizer, self.stop, self.start = tokenizer, list(stop), start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


@torch.no_grad()
def sample_responses(model, processor, examples: list[dict], *, n: int = 1, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int | Callable[[dict], int] = 64, seed: int = 0,
                     first_prompt: int = 0, batch_size: int = 64, stop: Sequence[str] = (),
                     desc: str | None = "sample") -> Samples:
    """``n`` completions of each example's prompt (``examples`` as ``build_inputs`` takes them).

    Each prompt becomes ``n`` rows of the batch (``batch_size`` counts rows). ``temperature=0`` is greedy decoding
    (no noise, no warpers); otherwise logits are divided by ``temperature``, cut to the top-``top_p`` nucleus and
    sampled as the module docstring says. Rows are ordered by (task, number of images) so that a batch holds
    similar prompts; a callable ``max_new_tokens`` gives each example its budget and a batch runs to the largest
    of its rows'. Generation stops at the tokenizer's end-of-turn (``eos``) token and, given ``stop``, once the
    decoded completion holds one of those strings (module docstring). ``desc=None`` hides the
    progress bar. Example ``i`` is prompt ``first_prompt + i`` of the seed's stream: a process's share of a larger
    batch draws what the whole batch draws.
    """
    if any(not s for s in stop):
        raise MMAlignError(f"sampling: a stop string is empty (stop={list(stop)!r})")
    if n < 1 or temperature < 0 or not 0 < top_p <= 1:
        raise MMAlignError(f"sampling: need n >= 1, temperature >= 0 and 0 < top_p <= 1 "
                           f"(got n={n}, temperature={temperature}, top_p={top_p})")
    budget = max_new_tokens if callable(max_new_tokens) else lambda _: max_new_tokens
    order = sorted(range(len(examples)), key=lambda i: (examples[i].get("task", ""), len(examples[i]["images"])))
    rows = [(i, k) for i in order for k in range(n)]
    tokenizer = processor.tokenizer
    placeholders = placeholder_ids(processor)
    ids: list[list[list[int]]] = [[[] for _ in range(n)] for _ in examples]
    stopped = [[False] * n for _ in examples]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(rows), desc=desc, unit="sample", disable=desc is None)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = [examples[i] for i, _ in chunk]
        inputs = build_inputs(processor, batch, for_generation=True).to(model.device)
        prompt_len = inputs["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnStrings(tokenizer, stop, prompt_len)] if stop else [])
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=max(budget(e) for e in batch),
                             logits_processor=_warpers(temperature, top_p, chunk, seed, first_prompt, model.device),
                             stopping_criteria=criteria,
                             suppress_tokens=placeholders or None,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for (i, k), row in zip(chunk, gen[:, prompt_len:].tolist()):
            ids[i][k], stopped[i][k] = _until_stop(row, tokenizer, stop)
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    texts = [[tokenizer.decode(t, skip_special_tokens=True).strip() for t in row] for row in ids]
    return Samples(texts=texts, token_ids=ids, stopped=stopped)


def placeholder_ids(processor) -> list[int]:
    """The ids of the processor's image, video and audio placeholder tokens. A sampled completion must never hold
    one: scoring it again (log-probs, the next turn) would expand it into features that do not exist."""
    tokens = [getattr(processor, a, None) for a in ("image_token", "video_token", "audio_token")]
    return [processor.tokenizer.convert_tokens_to_ids(t) for t in tokens if isinstance(t, str)]


def _warpers(temperature: float, top_p: float, chunk: list[tuple[int, int]], seed: int, first_prompt: int,
             device: torch.device) -> LogitsProcessorList:
    if temperature == 0:
        return LogitsProcessorList()
    generators = [torch.Generator(device=device).manual_seed(row_seed(seed, first_prompt + i, k)) for i, k in chunk]
    nucleus = [TopPLogitsWarper(top_p)] if top_p < 1 else []
    return LogitsProcessorList([TemperatureLogitsWarper(temperature), *nucleus, RowGumbelNoise(generators)])


def _until_stop(row: list[int], tokenizer, stop: Sequence[str]) -> tuple[list[int], bool]:
    """The generated ids up to the end-of-turn token or the first token whose decoded prefix holds a stop string
    (the padding ``generate`` puts after a finished row dropped), and whether the completion stopped."""
    eos = tokenizer.eos_token_id
    row = row[:row.index(eos) + 1] if eos in row else row
    for j in range(len(row) if stop else 0):
        if any(s in tokenizer.decode(row[:j + 1], skip_special_tokens=True) for s in stop):
            return row[:j + 1], True
    return row, bool(row) and row[-1] == eos


@torch.no_grad()
def answer_probs(model, processor, examples: list[dict], options: dict[str, list[str]], *,
                 batch_size: int = 64) -> list[dict[str, float]]:
    """For each prompt, the probability of each option as the answer's first token: ``P(option) = sum`` over the
    option's spellings of the next-token probability after the generation prompt (RLAIF-V reads
    ``P("yes") + P("Yes")`` against ``P("no") + P("No")`` this way). Spellings that are not one token are skipped;
    an option with none raises ``MMAlignError``."""
    token_sets = {name: _single_tokens(processor.tokenizer, spellings) for name, spellings in options.items()}
    out = []
    was_training = model.training
    model.eval()
    for start in range(0, len(examples), batch_size):
        inputs = build_inputs(processor, examples[start:start + batch_size], for_generation=True).to(model.device)
        probs = model(**inputs).logits[:, -1].float().softmax(-1)
        out += [{name: float(p[list(toks)].sum()) for name, toks in token_sets.items()} for p in probs]
    model.train(was_training)
    return out


def _single_tokens(tokenizer, spellings: list[str]) -> set[int]:
    ids = [tokenizer.encode(s, add_special_tokens=False) for s in spellings]
    found = {t[0] for t in ids if len(t) == 1 and t[0] != tokenizer.unk_token_id}
    if not found:
        raise MMAlignError(f"none of {spellings} is a single token of the tokenizer")
    return found
