"""Rollouts: G sampled completions per prompt as token ids, response masks, old log-probs and the images they saw.

Layout. Row ``i * G + k`` is completion ``k`` of prompt ``i``: the G completions of a prompt are consecutive rows, as
``advantages.grouped`` expects. Response tensors are ``(B, T)``, ``T`` the longest response of the rollout, padded on
the right; ``mask`` is 1 on response tokens, the last of which is the end-of-turn token when the completion stopped
by itself and the last allowed token when it ran into ``max_new_tokens`` (``stopped`` tells which).

Teacher-forced layout. ``teacher_forced_inputs`` lays each row out as ``[prompt_i | response_i | pad]``, padded on
the right as ``build_inputs`` lays out training rows, so every row starts at position 0 without explicit position ids
(LLaVA's 1-D positions and Qwen2-VL's M-RoPE alike). Response token ``j`` of row ``i`` sits at column ``p_i + j`` and
is predicted from column ``p_i + j - 1``; ``response_forward`` gathers exactly those columns.

Packed layout (``packed=True``, the config's ``rollout.packed``). The rows of a batch that share a prompt (a group's
completions, or the part of a group a shuffled micro-batch holds) become one row ``[prompt | y_1 | ... | y_k]``
(``data.pack.pack_responses``): a block mask keeps the completions from seeing each other and each one's positions
continue the prompt's, so every token gets the log-prob, entropy and value it gets in its own row (to float
rounding), while the prompt and its images run once per group: ``G(P+R)`` tokens become ``P+G*R``
(``models.packed``). Outputs keep the ``(B, T)`` layout. Scoring and updates use the same switch, so the old
log-probs and the loss see the same arithmetic.

Old log-probs, ``l_old(y_t) = log pi_old(y_t | I, x, y_<t)``, come from one teacher-forced forward of the policy in
eval mode without gradient, as TRL's GRPO (``old_per_token_logps``) and verl (``compute_log_prob``) recompute them,
not from ``generate``'s scores: those are the *processed* logits (divided by the temperature, cut to the top-p
nucleus and, in ``sample_responses``, with the Gumbel noise of the draw added), not ``log pi_theta``; and the policy
loss later scores the same rows with the same full forward, so the first update's ratio ``exp(l_theta - l_old)`` is
1 up to float rounding and any departure from 1 is a real change of the policy. The price is one forward per rollout.

Backends (``RolloutEngine``): an engine only draws token ids (``sample``); the old log-probs always come from the
training policy (``score_rows``), so a backend cannot change what the loss sees. ``HFEngine`` samples with
``models.generate.sample_responses`` (Hugging Face ``generate`` with its KV cache, temperature and top-p, a seed per
row, stop at end-of-turn or at a stop string). There is no vLLM backend yet: it needs the policy's weights pushed
into the vLLM engine after every update, an API that differs between vLLM versions, and neither vLLM nor a GPU is
here to test one. What it must do with the prompt: pass the chat-template *text* (``prompt_text``), which holds one
unexpanded image placeholder per image, with the PIL images as ``multi_modal_data={"image": images}``; vLLM's own
processor expands each placeholder into that image's tokens. Passing our processor's ``input_ids`` (already
expanded) together with the images would expand them a second time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import BatchFeature

from mmalign.data.pack import pack_responses
from mmalign.models.generate import Samples, sample_responses
from mmalign.models.inputs import TOKEN_KEYS, prompt_text
from mmalign.models.packed import packed_output, scatter
from mmalign.rl.policy_losses import token_entropy


@dataclass
class Rollout:
    """``B = prompts * group_size`` completions (module docstring for the layout).

    examples:      ``B`` example dicts, each prompt's repeated ``group_size`` times (``images``, ``prompt`` and the
                   ground truth the rewards read).
    texts:         ``B`` decoded completions, special tokens skipped.
    response_ids:  ``(B, T)`` long, the pad id after each response.
    mask:          ``(B, T)`` bool, True on response tokens.
    stopped:       ``(B,)`` bool, the completion ended with the end-of-turn token.
    old_logps:     ``(B, T)`` float, ``l_old(y_t)``, 0 on padding.
    """

    examples: list[dict]
    texts: list[str]
    response_ids: torch.Tensor
    mask: torch.Tensor
    stopped: torch.Tensor
    old_logps: torch.Tensor
    group_size: int

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` response tokens per row, the end-of-turn token included."""
        return self.mask.sum(1)

    def select(self, rows: Sequence[int]) -> Rollout:
        """The rows ``rows`` (whole groups, to keep the layout), in that order."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        return Rollout([self.examples[i] for i in idx.tolist()], [self.texts[i] for i in idx.tolist()],
                       self.response_ids[idx], self.mask[idx], self.stopped[idx], self.old_logps[idx],
                       self.group_size)


def cat_rollouts(parts: Sequence[Rollout], pad_id: int) -> Rollout:
    """Rows of several rollouts (same group size) in order, response tensors padded to the widest."""
    width = max(p.mask.shape[1] for p in parts)

    def pad(x: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    return Rollout([e for p in parts for e in p.examples], [t for p in parts for t in p.texts],
                   torch.cat([pad(p.response_ids, pad_id) for p in parts]), torch.cat([pad(p.mask, False) for p in parts]),
                   torch.cat([p.stopped for p in parts]), torch.cat([pad(p.old_logps, 0.0) for p in parts]),
                   parts[0].group_size)


class RolloutEngine(Protocol):
    """Draws ``n`` completions of each example's prompt; ``seed`` fixes the draws (sample ``k`` of prompt ``i`` is
    a function of ``(seed, first_prompt + i, k)`` and the weights only: a process's share of a larger rollout,
    its first prompt at ``first_prompt``, draws what that rollout draws)."""

    def sample(self, examples: list[dict], *, n: int, seed: int, first_prompt: int = 0) -> Samples: ...


@dataclass
class HFEngine:
    """Sampling with Hugging Face ``generate`` on the policy itself (``sample_responses``): always the current
    weights, nothing to synchronise."""

    model: torch.nn.Module
    processor: object
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    batch_size: int = 64
    stop: tuple[str, ...] = ()     # stop strings: a completion ends with the token that spells one

    def sample(self, examples: list[dict], *, n: int, seed: int, first_prompt: int = 0) -> Samples:
        return sample_responses(self.model, self.processor, examples, n=n, temperature=self.temperature,
                                top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=seed,
                                first_prompt=first_prompt, batch_size=self.batch_size, stop=self.stop, desc=None)


def teacher_forced_inputs(processor, examples: list[dict], response_ids: torch.Tensor,
                          mask: torch.Tensor) -> tuple[BatchFeature, torch.Tensor]:
    """``[prompt_i | response_i | pad]`` rows for one forward (module docstring) and the prompt lengths ``(B,)``
    (image tokens included). The prompt is processed as ``build_inputs`` processes it for generation (chat template,
    images, image-token expansion), so the tokens are those ``generate`` continued."""
    images = [list(ex["images"]) for ex in examples]
    batch = processor(images=images if any(images) else None, text=[prompt_text(processor, ex) for ex in examples],
                      padding=True, padding_side="right", return_tensors="pt")
    prompt_len = batch["attention_mask"].sum(1)
    total = prompt_len + mask.sum(1)
    pos = torch.arange(int(total.max()))[None]
    inside = pos < total[:, None]
    in_response = (pos >= prompt_len[:, None]) & inside
    resp_col = (pos - prompt_len[:, None]).clamp(0, response_ids.shape[1] - 1)
    prompt_ids = batch["input_ids"].gather(1, pos.expand(len(examples), -1).clamp(max=batch["input_ids"].shape[1] - 1))
    ids = torch.where(in_response, response_ids.gather(1, resp_col), prompt_ids)
    out = {k: v for k, v in batch.items() if k not in TOKEN_KEYS}
    out["input_ids"] = ids.masked_fill(~inside, processor.tokenizer.pad_token_id)
    out["attention_mask"] = inside.long()
    if "mm_token_type_ids" in batch:   # response tokens are text
        types = torch.nn.functional.pad(batch["mm_token_type_ids"], (0, ids.shape[1] - batch["input_ids"].shape[1]))
        out["mm_token_type_ids"] = types.masked_fill(~inside | in_response, 0)
    return BatchFeature(out), prompt_len


@dataclass
class Forward:
    """The model on a rollout's rows, response-aligned ``(B, T)``: ``logps`` (0 on padding), ``entropies`` (when
    asked) and ``values`` (when asked: the model's ``values`` output, a value head's ``V`` at the columns that
    predict each response token, i.e. of the state before each token)."""

    logps: torch.Tensor
    entropies: torch.Tensor | None = None
    values: torch.Tensor | None = None


def response_forward(model, processor, examples: list[dict], response_ids: torch.Tensor, mask: torch.Tensor, *,
                     entropies: bool = False, values: bool = False, packed: bool = False) -> Forward:
    """One teacher-forced forward of ``model`` (the policy, or ``value.ActorCritic`` for ``values``); gradient
    flows unless the caller disables it. ``packed``: rows that share a prompt share one packed row (module
    docstring); the outputs are the same.

    ``l(y_j)`` of row ``i`` is the log-softmax of the logits that predict it (column ``p_i + j - 1`` of its own row,
    or the packed row's ``source``), ``H_j = -sum_v p_v log p_v`` of the distribution there
    (``policy_losses.token_entropy``) and ``V_j`` the value head's output at that column."""
    device = next(model.parameters()).device
    width = mask.shape[1]
    if packed:
        pk = pack_responses(processor, examples, response_ids, mask).to(device)
        out, start = packed_output(model, pk.batch)
        rows = pk.row[:, None].expand(-1, width)
        cols = pk.batch.source[rows, pk.column]
    else:
        inputs, prompt_len = teacher_forced_inputs(processor, examples, response_ids, mask)
        out, start = model(**inputs.to(device)), 0
        rows = torch.arange(len(examples), device=device)[:, None].expand(-1, width)
        cols = prompt_len.to(device)[:, None] - 1 + torch.arange(width, device=device)[None]
    return _at(out, start, rows, cols, response_ids.to(device), mask.to(device), entropies=entropies, values=values)


def _at(out, start: int, rows: torch.Tensor, cols: torch.Tensor, response_ids: torch.Tensor, mask: torch.Tensor, *,
        entropies: bool, values: bool) -> Forward:
    """The ``Forward`` of response tokens whose predicting position is ``(rows, cols)`` ``(B, T)``, of the model's
    output whose logits start at column ``start``; only the masked tokens are computed, 0 elsewhere."""
    r, c = rows[mask], cols[mask]
    where = mask.nonzero(as_tuple=True)
    picked = out.logits[r, c - start].float()          # (N, V): one distribution per response token
    result = Forward(scatter(mask.shape, *where, -F.cross_entropy(picked, response_ids[mask], reduction="none")))
    if entropies:
        result.entropies = scatter(mask.shape, *where, token_entropy(picked))
    if values:
        result.values = scatter(mask.shape, *where, out["values"][r, c])
    return result


@torch.no_grad()
def score_rows(model, processor, rollout: Rollout, *, batch_size: int, packed: bool = False) -> torch.Tensor:
    """``(B, T)`` log-probs of the rollout's responses under ``model`` in eval mode, ``batch_size`` rows per forward
    (the old log-probs of the policy, or the reference's)."""
    was_training = model.training
    model.eval()
    parts = [response_forward(model, processor, rollout.examples[s:s + batch_size],
                              rollout.response_ids[s:s + batch_size], rollout.mask[s:s + batch_size],
                              packed=packed).logps.float()
             for s in range(0, len(rollout.examples), batch_size)]
    model.train(was_training)
    return torch.cat(parts).cpu()


def make_rollout(engine: RolloutEngine, model, processor, examples: list[dict], *, group_size: int, seed: int,
                 first_prompt: int = 0, batch_size: int = 64, packed: bool = False) -> Rollout:
    """``group_size`` completions of each example from ``engine``, with the old log-probs of ``model`` (the policy
    that sampled them); ``first_prompt`` as ``RolloutEngine`` takes it."""
    samples = engine.sample(examples, n=group_size, seed=seed, first_prompt=first_prompt)
    rows = [ids for per_prompt in samples.token_ids for ids in per_prompt]
    width = max(1, max(len(r) for r in rows))
    pad = processor.tokenizer.pad_token_id
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[j < len(r) for j in range(width)] for r in rows])
    rollout = Rollout([ex for ex in examples for _ in range(group_size)],
                      [t for per_prompt in samples.texts for t in per_prompt], response_ids, mask,
                      torch.tensor([s for per_prompt in samples.stopped for s in per_prompt]),
                      torch.zeros(mask.shape), group_size)
    rollout.old_logps = score_rows(model, processor, rollout, batch_size=batch_size, packed=packed)
    return rollout

