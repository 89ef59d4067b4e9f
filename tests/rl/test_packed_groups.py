"""Prefix-shared RL forwards (``rollout.packed``): the rows of a batch that share a prompt as one packed row give
the plain rows' per-token log-probs, entropies and values, losses and gradients, for each tiny family; and two RL
steps of the real trainer match with the switch off and on.

    .venv/bin/python -m pytest -q -p no:xdist tests/rl/test_packed_groups.py
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from mmalign.config import load_config
from mmalign.data import pack
from mmalign.models import FAMILIES
from mmalign.models.load import vision_params, vision_tower
from mmalign.rl.config import RLConfig
from mmalign.rl.policy_losses import POLICY_LOSSES, value_loss
from mmalign.rl.rollout import response_forward, teacher_forced_inputs
from mmalign.rl.trainer import run_rl
from mmalign.rl.value import ActorCritic
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

TOL = {"rtol": 1e-5, "atol": 1e-5}
TEXTS = ["2", "a red circle on the left", "three", "yes", "no , there is not", "a blue star", "1"]
# a shuffled micro-batch: parts of two groups (one with two images) and a row alone
ORDER = [0, 1, 0, 2, 1, 0, 1]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return {name: build() for name, build in FAMILIES.items()}


@pytest.fixture(scope="module")
def prompts():
    world = WorldConfig()
    return [make_example(world, "count", "train", 0), make_example(world, "multi_image", "train", 1),
            make_example(world, "ground", "train", 2)]


@pytest.fixture(params=list(FAMILIES))
def family_name(request):
    return request.param


def responses(processor, texts=TEXTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, T)`` ids (each text and the end-of-turn) and mask, as in a ``Rollout``."""
    tok = processor.tokenizer
    rows = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    return ids, torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]


def critic(model) -> ActorCritic:
    """The policy with a value head that outputs something (it starts at zero)."""
    net = ActorCritic(model)
    torch.nn.init.normal_(net.value.weight, generator=torch.Generator().manual_seed(1))
    return net


def test_each_prompt_once_each_response_its_own_sequence(tiny, prompts):
    """Row i's response sits behind its prompt's one copy: prefix + branch are exactly the plain row's tokens,
    positions restart after the prompt, the first token is predicted from the prompt's last position."""
    _, processor = tiny["llava"]
    examples = [prompts[k] for k in ORDER]
    ids, mask = responses(processor)
    pk = pack.pack_responses(processor, examples, ids, mask)
    plain, prompt_len = teacher_forced_inputs(processor, examples, ids, mask)
    b = pk.batch
    assert pk.row.tolist() == ORDER and b.labels.shape[0] == 3             # three prompts, three packed rows
    for i in range(len(examples)):
        r, n, p = int(pk.row[i]), int(mask[i].sum()), int(prompt_len[i])
        cols = pk.column[i, :n]
        branch = int(b.branch[r, cols[0]])
        assert branch > 0 and (b.branch[r, cols] == branch).all()
        alone = (b.branch[r] == 0) | (b.branch[r] == branch)
        assert b.inputs["input_ids"][r][alone].tolist() == plain["input_ids"][i, :p + n].tolist()
        assert b.labels[r, cols].tolist() == ids[i, :n].tolist()
        assert b.positions[r, cols].tolist() == list(range(p, p + n))
        assert b.source[r, cols].tolist() == [p - 1] + cols[:-1].tolist()
        assert (pk.column[i, n:] == 0).all()
    assert [int((b.branch[r] > 0).sum()) for r in range(3)] == [int(mask[pk.row == r].sum()) for r in range(3)]


def test_outputs_equal_the_plain_rows(tiny, prompts, family_name):
    """Log-probs, entropies and values token by token (M-RoPE for Qwen2-VL, image splitting for Idefics3)."""
    model, processor = tiny[family_name]
    net = critic(model).eval()
    examples = [prompts[k] for k in ORDER]
    ids, mask = responses(processor)
    with torch.no_grad():
        plain = response_forward(net, processor, examples, ids, mask, entropies=True, values=True)
        packed = response_forward(net, processor, examples, ids, mask, entropies=True, values=True, packed=True)
    for field in ("logps", "entropies", "values"):
        x, y = getattr(plain, field), getattr(packed, field)
        assert y.shape == x.shape == mask.shape and (y[~mask] == 0).all(), field
        assert (x[mask] != 0).all(), field                                  # nothing trivially zero
        torch.testing.assert_close(y, x, **TOL, msg=field)


def test_vision_tower_runs_once_per_prompt(tiny, prompts):
    model, processor = tiny["llava"]
    seen = []
    hook = vision_tower(model).register_forward_hook(
        lambda m, args, kwargs, out: seen.append((args[0] if args else kwargs["pixel_values"]).shape[0]),
        with_kwargs=True)
    examples = [prompts[k] for k in ORDER]                                  # 3 + 3 * 2 + 1 = 10 images
    ids, mask = responses(processor)
    try:
        with torch.no_grad():
            for packed in (False, True):
                response_forward(model, processor, examples, ids, mask, packed=packed)
    finally:
        hook.remove()
    assert seen == [10, 4]                                                  # packed: 1 + 2 + 1


def test_policy_and_value_losses_and_gradients_agree(tiny, prompts, family_name):
    """GRPO's clipped loss with a KL term (ratios away from 1, some clipped) plus PPO's value loss: the same loss
    and the same gradient, vision tower and value head included."""
    model, processor = tiny[family_name]
    net = critic(copy.deepcopy(model))
    examples = [prompts[k] for k in ORDER]
    ids, mask = responses(processor)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        now = response_forward(net, processor, examples, ids, mask, values=True)
    old = (now.logps + 0.3 * torch.randn(mask.shape, generator=g)) * mask
    ref = (now.logps + 0.3 * torch.randn(mask.shape, generator=g)) * mask
    adv, returns = torch.randn(mask.shape, generator=g), torch.randn(mask.shape, generator=g)
    grads, losses = [], []
    for packed in (False, True):
        net.zero_grad()
        fwd = response_forward(net, processor, examples, ids, mask, entropies=True, values=True, packed=packed)
        out = POLICY_LOSSES["grpo"](fwd.logps, old, adv, mask, ref_logps=ref, entropies=fwd.entropies, kl_coef=0.1,
                                    entropy_coef=0.01, max_length=mask.shape[1])
        loss = out.loss + 0.1 * value_loss(fwd.values, now.values, returns, mask, clip_eps=0.2,
                                           loss_agg="seq_mean_token_mean", max_length=mask.shape[1]).loss
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append({k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})
    assert 0 < out.metrics["clip_frac"] < 1
    assert losses[1] == pytest.approx(losses[0], rel=1e-6, abs=1e-6)
    tower = {n for n, p in net.named_parameters() if any(p is q for q in vision_params(net.policy))}
    assert grads[0].keys() == grads[1].keys() and tower & grads[0].keys() and "value.weight" in grads[0]
    norm = torch.sqrt(sum(x.pow(2).sum() for x in grads[0].values()))
    diff = torch.sqrt(sum((grads[1][k] - x).pow(2).sum() for k, x in grads[0].items()))
    assert norm > 1e-3 and diff / norm < 1e-5
    for k, x in grads[0].items():
        torch.testing.assert_close(grads[1][k], x, rtol=1e-4, atol=1e-6, msg=k)


def logged_run(out, *overrides: str) -> list[dict]:
    """``run_rl`` for 2 RL steps of 4 counting prompts x 4 completions, 4 updates each in micro-batches of 4 shuffled
    rows (parts of groups, rows alone); its logged records."""
    run_rl(load_config(RLConfig, None, [
        f"train.output_dir={out}", "rollout.prompts=4", "rollout.group_size=4", "rollout.temperature=1.5",
        "rollout.max_new_tokens=4", "train.max_steps=2", "train.batch_size=4", "train.lr=1e-3", "train.log_every=1",
        "train.eval_every=0", "train.threads=1", "eval.n_per_task=0", *overrides]))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algorithm", [
    ["algorithm.kl.coef=0.1"],                                          # GRPO, a reference, KL in the loss
    ["algorithm.advantage=gae", "algorithm.loss=ppo"],                  # PPO: the value head's old values too
], ids=["grpo", "ppo"])
def test_rl_training_steps_match(tmp_path, monkeypatch, algorithm):
    """The real trainer (rollouts, old and reference log-probs, updates) with ``rollout.packed`` off and on: the
    same logged numbers; and the switch really packs."""
    calls = []
    packer = pack.pack_responses
    monkeypatch.setattr("mmalign.rl.rollout.pack_responses", lambda *a: calls.append(len(a[1])) or packer(*a))
    runs = {}
    for packed in (False, True):
        runs[packed] = logged_run(tmp_path / str(packed), *algorithm, f"rollout.packed={packed}")
        assert bool(calls) == packed
    off, on = runs[False], runs[True]
    assert len(off) == len(on) == 2 and off[0]["loss"] != off[1]["loss"]
    for x, y in zip(off, on):
        assert x.keys() == y.keys()
        for k in x:
            if k != "steps_per_s":
                assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), k
