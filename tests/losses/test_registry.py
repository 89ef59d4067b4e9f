"""The registry: names, signatures as schemas, needs flags that agree with what each function reads, and the
config checks."""
from __future__ import annotations

import inspect
from dataclasses import fields, replace

import pytest
import torch

from mmalign.errors import ConfigError
from mmalign.losses import (
    DATA_INPUTS,
    PREFERENCE_LOSSES,
    RUNTIME_INPUTS,
    LossSpec,
    check_loss_settings,
    loss_hyperparameters,
)
from mmalign.types import LossOutput, PreferenceLogps, SeqLogps

from ._helpers import hand_batch, t

SURVEY_NAMES = ["dpo", "cdpo", "robust", "ipo", "hinge", "simpo", "orpo", "kto", "bco", "nca", "apo_zero", "apo_down",
                "rpo", "mdpo", "image_dpo", "hadpo", "ddpo", "mmdpo", "povid"]
NAMES = list(PREFERENCE_LOSSES)
DATA = {"reward_margin": t(1, 0), "sft_nll": t(2)[0], "kl_logratio": t(0.4, 0.2), "reward_mean": t(0.05)[0]}
VIEW_FLAGS = {"needs_corrupt_image": "chosen_corrupt", "needs_noise_image": "noise", "needs_chosen_nll": "chosen_nll"}
NEEDS = [f.name for f in fields(LossSpec) if f.name.startswith("needs_")]


def _strip(logps: PreferenceLogps, spec: LossSpec, off: str | None) -> PreferenceLogps:
    """Only the views the flags ask for; ``off`` turns one flag off."""
    on = lambda flag: getattr(spec, flag) and flag != off
    drop = {view: None for flag, view in VIEW_FLAGS.items() if not on(flag)}
    if not on("needs_token_weights"):
        bare = lambda s: SeqLogps(s.sum, s.count)
        drop |= {"chosen": bare(logps.chosen), "rejected": bare(logps.rejected)}
    return replace(logps, **drop)


def call(name: str, off: str | None = None, scale: float = 1.0) -> LossOutput:
    """Call a loss with exactly what its flags ask for (``off``: minus one of them). ``scale`` multiplies every
    response's length: sums, counts and weights (the token-mean NLL is unchanged)."""
    spec = PREFERENCE_LOSSES[name]
    policy, reference = hand_batch()
    if scale != 1.0:
        grow = lambda s: s if s is None else SeqLogps(*(None if x is None else scale * x for x in
                                                        (s.sum, s.count, s.weighted, s.weight_sum)))
        policy, reference = (replace(p, chosen=grow(p.chosen), rejected=grow(p.rejected), noise=grow(p.noise),
                                     chosen_corrupt=grow(p.chosen_corrupt)) for p in (policy, reference))
    trained = lambda x: x.clone().requires_grad_()  # DDPO reads the weighted sum, every other loss the sum
    policy = replace(policy, chosen=replace(policy.chosen, sum=trained(policy.chosen.sum),
                                            weighted=trained(policy.chosen.weighted)))
    reference = _strip(reference, spec, off) if spec.needs_reference and off != "needs_reference" else None
    data = {k: v for k, v in DATA.items() if getattr(spec, DATA_INPUTS[k]) and DATA_INPUTS[k] != off}
    return spec.fn(_strip(policy, spec, off), reference, **data)


def test_registry_keys_are_the_survey_names():
    assert NAMES == SURVEY_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_the_schema(name):
    spec = PREFERENCE_LOSSES[name]
    params = list(inspect.signature(spec.fn).parameters.values())
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert [(p.name, p.kind) for p in params[:2]] == [("policy", positional), ("reference", positional)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    required = {p.name for p in params[2:] if p.default is p.empty}
    assert required == {k for k, flag in DATA_INPUTS.items() if getattr(spec, flag)}
    hyper = loss_hyperparameters(name)
    assert "beta" in hyper and all(isinstance(v, (int, float, str)) for v in hyper.values())
    assert {p.name for p in params[2:]} - required - set(hyper) <= RUNTIME_INPUTS
    if not spec.needs_reference:
        assert params[1].default is None


@pytest.mark.parametrize("name", NAMES)
def test_docstring_states_paper_and_equation(name):
    doc = PREFERENCE_LOSSES[name].fn.__doc__
    assert "arXiv" in doc and "loss = " in doc


@pytest.mark.parametrize("name", NAMES)
def test_flags_are_sufficient(name):
    # reference-free losses get reference=None; unflagged views, weights and data inputs are absent
    out = call(name)
    assert out.loss.shape == (2,) and torch.isfinite(out.loss).all() and out.loss.requires_grad
    assert {"chosen_reward", "rejected_reward", "margin", "accuracy"} <= set(out.metrics)
    for key, value in out.metrics.items():
        assert not value.requires_grad and value.shape in {(2,), ()}, key


@pytest.mark.parametrize("name,flag", [(n, f) for n in NAMES for f in NEEDS if getattr(PREFERENCE_LOSSES[n], f)])
def test_each_flag_is_necessary(name, flag):
    with pytest.raises((AttributeError, TypeError), match="NoneType|missing 1 required keyword-only argument"):
        call(name, off=flag)


@pytest.mark.parametrize("name", NAMES)
def test_length_normalized_flag(name):
    # doubling every response's length (sum, count, weights) leaves exactly the length-normalised losses unchanged
    unchanged = torch.allclose(call(name).loss, call(name, scale=2.0).loss)
    assert unchanged == PREFERENCE_LOSSES[name].length_normalized


@pytest.mark.parametrize("name,defaults", [
    ("dpo", {"beta": 0.1}), ("ipo", {"beta": 0.1}), ("simpo", {"beta": 2.0, "gamma_beta_ratio": 0.25}),
    ("orpo", {"beta": 0.1}), ("kto", {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}),
    ("bco", {"beta": 0.1}), ("mdpo", {"beta": 0.1}), ("hadpo", {"beta": 0.1, "gamma": 0.5}),
    ("mmdpo", {"beta": 0.1, "w": 0.1, "k": 1.0, "gamma": 0.25, "variant": "paper"}), ("povid", {"beta": 0.1}),
])
def test_spec_defaults(name, defaults):
    assert loss_hyperparameters(name) == defaults


def test_check_loss_settings_accepts_valid_settings():
    check_loss_settings("dpo", {})
    check_loss_settings("simpo", {"beta": 2.5, "gamma_beta_ratio": 0.4})
    check_loss_settings("mmdpo", {"variant": "released", "w": 0.1})


@pytest.mark.parametrize("name,settings,message", [
    ("dpo", {"bta": 0.2}, "loss 'dpo' has no setting 'bta'; did you mean 'beta'?"),
    ("cdpo", {"label_smothing": 0.1}, "did you mean 'label_smoothing'?"),
    ("simpo", {"zzz": 1}, "loss 'simpo' has no setting 'zzz'; valid: beta, gamma_beta_ratio"),
    ("kto", {"kl_logratio": 0.0}, "'kl_logratio' is computed by the trainer, not a setting"),
    ("mmdpo", {"generator": None}, "'generator' is computed by the trainer"),
    ("mmdpo", {"variant": "relased"}, "variant='relased' is not one of 'paper', 'released'"),
    ("dop", {}, "unknown loss 'dop'; did you mean 'dpo'?"),
    ("image-dpo", {"beta": 0.1}, "did you mean 'image_dpo'?"),
])
def test_check_loss_settings_errors(name, settings, message):
    with pytest.raises(ConfigError) as err:
        check_loss_settings(name, settings)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_loss_hyperparameters_of_an_unknown_loss():
    with pytest.raises(ConfigError, match="unknown loss 'smipo'; did you mean 'simpo'"):
        loss_hyperparameters("smipo")
