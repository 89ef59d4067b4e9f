"""Preference losses and their registry.

Every loss is a pure function over reduced log-probs (``mmalign.types``)::

    fn(policy: PreferenceLogps, reference: PreferenceLogps | None, *, <hyperparameters>, <data inputs>) -> LossOutput

Its keyword-only parameters fall in three groups:

* hyperparameters: keyword-only *with* defaults; set from the config (``loss.params``), checked by
  ``check_loss_settings``, listed by ``loss_hyperparameters``. The signature is the schema.
* data inputs (``DATA_INPUTS``): keyword-only *without* defaults; the trainer computes them every step, each one when
  the loss's ``LossSpec`` sets the flag named beside it.
* runtime inputs (``RUNTIME_INPUTS``): optional objects the trainer may pass and a config never sets:
  ``generator``, the ``torch.Generator`` for ``mmdpo(variant="released")``'s random subsample.

``PREFERENCE_LOSSES`` maps the survey's method names to ``LossSpec(fn, needs...)``; the trainer computes exactly the
forward passes and inputs the flags ask for.
"""
from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass

from mmalign.errors import ConfigError
from mmalign.losses.multimodal import ddpo, hadpo, image_dpo, mdpo, mmdpo, povid
from mmalign.losses.preference import apo_down, apo_zero, bco, cdpo, dpo, hinge, ipo, kto, nca, orpo, robust, rpo, simpo
from mmalign.types import LossOutput

DATA_INPUTS: dict[str, str] = {
    "reward_margin": "needs_reward_margin",  # (B,) reward-model margin d = r_RM(y_w) - r_RM(y_l), from the records
    "sft_nll": "needs_sft_batch",            # scalar: the policy's token-mean NLL on an SFT batch, with gradient
    "kl_logratio": "needs_kl_logratio",      # (B,) S_theta(y') - S_ref(y') of mismatched completions, no gradient
    "reward_mean": "needs_reward_mean",      # scalar: a RunningMean (losses.state) of past metrics["rewards"]
}
RUNTIME_INPUTS = frozenset({"generator"})


@dataclass(frozen=True)
class LossSpec:
    """A loss function and what the trainer must compute for it.

    needs_reference:     reads ``reference``; otherwise it is called with ``reference=None``.
    needs_corrupt_image: reads the ``chosen_corrupt`` view (``y_w`` given a corrupted image ``I'``).
    needs_noise_image:   reads the ``noise`` view (POVID's ``y_noise``, built from a noised image).
    needs_token_weights: reads ``SeqLogps.weighted`` / ``weight_sum`` of chosen and rejected.
    needs_reward_margin: takes the data input ``reward_margin``.
    needs_chosen_nll:    reads ``policy.chosen_nll``.
    needs_sft_batch:     takes the data input ``sft_nll`` (one SFT batch per step).
    needs_kl_logratio:   takes the data input ``kl_logratio`` (the ``kl`` view, policy and reference).
    needs_reward_mean:   takes the data input ``reward_mean`` (the trainer keeps a ``RunningMean``).
    length_normalized:   its sequence score is a per-token average (``|y|``, or ``sum_t w_t`` for DDPO).
    """

    fn: Callable[..., LossOutput]
    needs_reference: bool = False
    needs_corrupt_image: bool = False
    needs_noise_image: bool = False
    needs_token_weights: bool = False
    needs_reward_margin: bool = False
    needs_chosen_nll: bool = False
    needs_sft_batch: bool = False
    needs_kl_logratio: bool = False
    needs_reward_mean: bool = False
    length_normalized: bool = False


PREFERENCE_LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec(dpo, needs_reference=True),
    "cdpo": LossSpec(cdpo, needs_reference=True),
    "robust": LossSpec(robust, needs_reference=True),
    "ipo": LossSpec(ipo, needs_reference=True, length_normalized=True),
    "hinge": LossSpec(hinge, needs_reference=True),
    "simpo": LossSpec(simpo, length_normalized=True),
    "orpo": LossSpec(orpo, needs_chosen_nll=True, length_normalized=True),
    "kto": LossSpec(kto, needs_reference=True, needs_kl_logratio=True),
    "bco": LossSpec(bco, needs_reference=True, needs_reward_mean=True),
    "nca": LossSpec(nca, needs_reference=True),
    "apo_zero": LossSpec(apo_zero, needs_reference=True),
    "apo_down": LossSpec(apo_down, needs_reference=True),
    "rpo": LossSpec(rpo, needs_reference=True, needs_chosen_nll=True),
    "mdpo": LossSpec(mdpo, needs_reference=True, needs_corrupt_image=True),
    "image_dpo": LossSpec(image_dpo, needs_reference=True, needs_corrupt_image=True),
    "hadpo": LossSpec(hadpo, needs_reference=True, needs_sft_batch=True),
    "ddpo": LossSpec(ddpo, needs_reference=True, needs_token_weights=True, length_normalized=True),
    "mmdpo": LossSpec(mmdpo, needs_reference=True, needs_reward_margin=True, needs_chosen_nll=True),
    "povid": LossSpec(povid, needs_reference=True, needs_noise_image=True),
}


def _suggestion(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(choices) or '(none)'}"


def _spec(name: str) -> LossSpec:
    if name not in PREFERENCE_LOSSES:
        raise ConfigError(f"unknown loss '{name}'{_suggestion(name, PREFERENCE_LOSSES)}")
    return PREFERENCE_LOSSES[name]


def loss_hyperparameters(name: str) -> dict[str, object]:
    """The loss's hyperparameters and their defaults, read from its signature (data and runtime inputs excluded)."""
    params = inspect.signature(_spec(name).fn).parameters.values()
    return {p.name: p.default for p in params
            if p.kind is p.KEYWORD_ONLY and p.name not in DATA_INPUTS and p.name not in RUNTIME_INPUTS}


def check_loss_settings(name: str, settings: dict) -> None:
    """Raise ``ConfigError`` (one line) for an unknown loss, an unknown setting or a value outside a ``Literal``."""
    valid = loss_hyperparameters(name)
    hints = typing.get_type_hints(PREFERENCE_LOSSES[name].fn)
    for key, value in settings.items():
        if key in DATA_INPUTS or key in RUNTIME_INPUTS:
            raise ConfigError(f"loss '{name}': '{key}' is computed by the trainer, not a setting")
        if key not in valid:
            raise ConfigError(f"loss '{name}' has no setting '{key}'{_suggestion(key, valid)}")
        choices = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is typing.Literal else ()
        if choices and value not in choices:
            raise ConfigError(f"loss '{name}': {key}={value!r} is not one of {', '.join(map(repr, choices))}")


__all__ = ["DATA_INPUTS", "PREFERENCE_LOSSES", "RUNTIME_INPUTS", "LossSpec", "check_loss_settings",
           "loss_hyperparameters"]
