"""Rollouts on the shipped lab model and on tiny Qwen2-VL / Idefics3 models: the row layout, masks that end at the
end-of-turn token (or at a stop string), and old log-probs equal to the library's own teacher-forced scoring of the
same text."""
from __future__ import annotations

import pytest
import torch

from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import token_logps
from mmalign.models.tiny import build_idefics3, build_llava, build_qwen2_vl
from mmalign.rl.config import shipped_base
from mmalign.rl.rollout import HFEngine, cat_rollouts, make_rollout, response_forward
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

MAX_NEW = 6


@pytest.fixture(scope="module")
def lab():
    return load_model(ModelConfig(path=shipped_base()))


@pytest.fixture(scope="module")
def examples():
    # counting answers stop after one word; a caption runs into MAX_NEW tokens
    return [make_example(WorldConfig(), task, "train", i) for i, task in enumerate(["count", "caption", "count"])]


@pytest.fixture(scope="module")
def rollout(lab, examples):
    model, processor = lab
    engine = HFEngine(model, processor, temperature=1.5, max_new_tokens=MAX_NEW, batch_size=4)
    return make_rollout(engine, model, processor, examples, group_size=3, seed=7, batch_size=4)


def training_path_logps(model, processor, example: dict, response: str) -> torch.Tensor:
    """The response's token log-probs as the SFT/preference trainers score them: prompt + response + end-of-turn."""
    batch = build_inputs(processor, [dict(example, response=response)])
    labels = batch.pop("labels")
    with torch.no_grad():
        logp, mask = token_logps(model(**batch).logits, labels)
    return logp[mask]


def test_layout_groups_and_shapes(rollout, examples):
    assert len(rollout.examples) == len(rollout.texts) == 9 and rollout.group_size == 3
    assert [e["id"] for e in rollout.examples] == [e["id"] for e in examples for _ in range(3)]
    b, t = rollout.response_ids.shape
    assert (b, t) == (9, MAX_NEW) and rollout.mask.shape == rollout.old_logps.shape == (9, t)
    assert rollout.stopped.shape == (9,) and rollout.stopped.dtype == torch.bool
    assert all(len(e["images"]) == 1 for e in rollout.examples)


def test_masks_end_at_end_of_turn(rollout, lab):
    eos, pad = lab[1].tokenizer.eos_token_id, lab[1].tokenizer.pad_token_id
    assert rollout.stopped[[0, 1, 2, 6, 7, 8]].all() and not rollout.stopped[3:6].any()   # counts stop, captions don't
    for i in range(9):
        n = int(rollout.lengths[i])
        assert rollout.mask[i, :n].all() and not rollout.mask[i, n:].any()               # a prefix
        ids = rollout.response_ids[i].tolist()
        assert eos not in ids[:n - 1] and (ids[n - 1] == eos) == bool(rollout.stopped[i])
        assert n == MAX_NEW or rollout.stopped[i]
        assert all(x == pad for x in ids[n:]) and (rollout.old_logps[i, n:] == 0).all()
        assert lab[1].tokenizer.decode(ids[:n], skip_special_tokens=True).strip() == rollout.texts[i]


def test_old_logps_equal_a_fresh_teacher_forced_forward(rollout, lab):
    model, processor = lab
    for i in range(9):
        expected = training_path_logps(model, processor, rollout.examples[i], rollout.texts[i])
        n = int(rollout.lengths[i])
        if not rollout.stopped[i]:
            expected = expected[:-1]          # the training path appends an end-of-turn the sample never reached
        assert expected.shape == (n,)
        torch.testing.assert_close(rollout.old_logps[i, :n], expected, atol=1e-5, rtol=0)
    assert (rollout.old_logps[rollout.mask] <= 0).all()


def test_same_seed_same_rollout(rollout, lab, examples):
    model, processor = lab
    engine = HFEngine(model, processor, temperature=1.5, max_new_tokens=MAX_NEW, batch_size=9)   # other batching
    again = make_rollout(engine, model, processor, examples, group_size=3, seed=7, batch_size=9)
    assert torch.equal(again.response_ids, rollout.response_ids) and again.texts == rollout.texts
    torch.testing.assert_close(again.old_logps, rollout.old_logps, atol=1e-5, rtol=0)
    other = make_rollout(engine, model, processor, examples, group_size=3, seed=8, batch_size=9)
    assert other.texts != rollout.texts


def test_a_stop_string_ends_a_row_with_the_token_that_spells_it(rollout, lab, examples):
    model, processor = lab
    word = rollout.texts[3].split()[1]              # a caption row runs to MAX_NEW tokens without a stop string
    engine = HFEngine(model, processor, temperature=1.5, max_new_tokens=MAX_NEW, batch_size=4, stop=(word,))
    stopped = make_rollout(engine, model, processor, examples, group_size=3, seed=7, batch_size=4)
    n = int(stopped.lengths[3])
    assert stopped.stopped[3] and n < MAX_NEW and stopped.texts[3].endswith(word)
    assert not stopped.mask[3, n:].any()
    assert stopped.response_ids[3, :n].tolist() == rollout.response_ids[3, :n].tolist()   # the same draw, cut
    torch.testing.assert_close(stopped.old_logps[3, :n], rollout.old_logps[3, :n], atol=1e-5, rtol=0)


def test_select_and_cat_keep_rows(rollout, lab):
    pad = lab[1].tokenizer.pad_token_id
    short = rollout.select([0, 1, 2])
    assert short.texts == rollout.texts[:3]
    both = cat_rollouts([short.select([0]), rollout.select([3])], pad)
    assert both.texts == [rollout.texts[0], rollout.texts[3]] and both.response_ids.shape == (2, MAX_NEW)
    assert torch.equal(both.mask[0], rollout.mask[0]) and torch.equal(both.old_logps[1], rollout.old_logps[3])


@pytest.mark.parametrize("build", [build_llava, build_qwen2_vl, build_idefics3], ids=["llava", "qwen2_vl", "idefics3"])
def test_teacher_forced_rows_match_the_training_layout(build):
    """Unequal prompt and response lengths in one batch (Qwen2-VL: M-RoPE positions and mm_token_type_ids;
    Idefics3: image splitting) score each response as the training path scores it alone."""
    torch.manual_seed(0)
    model, processor = build()
    model.eval()
    world = WorldConfig()
    examples = [make_example(world, "count", "train", 0), make_example(world, "ground", "train", 1)]
    texts = ["2", "a red circle on the left"]
    tok = processor.tokenizer
    rows = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]
    with torch.no_grad():
        got = response_forward(model, processor, examples, ids, mask, entropies=True)
    for i, (ex, text) in enumerate(zip(examples, texts)):
        torch.testing.assert_close(got.logps[i, :len(rows[i])], training_path_logps(model, processor, ex, text),
                                   atol=1e-5, rtol=1e-5)
    assert (got.logps[~mask] == 0).all() and (got.entropies[mask] > 0).all()
