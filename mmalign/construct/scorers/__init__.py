"""Scorers for self-annotation: ``fn(example, responses, *, <settings>) -> Scores``, one per recipe.

| name           | recipe (ALGORITHMS.md)          | score of a response                                          |
|----------------|---------------------------------|--------------------------------------------------------------|
| ``oracle``     | the lab's ground truth          | caption: covered - hallucinated mentions; else exact match   |
| ``clip``       | CLIP-DPO (§5.2, §9.3)           | the vision head's expected covered - hallucinated (or mean)  |
| ``reward_model`` | RLHF reward models (§3.1)     | ``reward(images, prompt, response)``                         |
| ``self_judge`` | SIMA (§5.3)                     | the oracle's formula with the policy's own yes/no beliefs    |
| ``claims``     | RLAIF-V (§5.4)                  | -#claims a labeller answers "no" to                          |
| ``judge``      | Silkie / VLFeedback (§5.1)      | an external judge's parsed rating                            |
| ``lab_judge``  | Silkie on the lab               | the lab judge's 1-10 rating against the ground truth         |

Settings are keyword-only parameters (the signature is the schema); ``make_scorer`` binds them and checks them.
``label_pairs`` (``mmalign.construct.label``) turns the scores into preference pairs.
"""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable

from mmalign.construct.scorers.claims import claims, model_labeller, self_judge
from mmalign.construct.scorers.clip import clip
from mmalign.construct.scorers.external import judge, reward_model
from mmalign.construct.scorers.mentions import object_mentions
from mmalign.construct.scorers.oracle import lab_judge, oracle
from mmalign.construct.scorers.scores import Scores
from mmalign.errors import ConfigError

Scorer = Callable[[dict, list[str]], "Scores | list[float]"]

SCORERS: dict[str, Callable[..., Scores]] = {
    "oracle": oracle, "clip": clip, "reward_model": reward_model, "self_judge": self_judge, "claims": claims,
    "judge": judge, "lab_judge": lab_judge,
}


def make_scorer(name: str, **settings) -> Scorer:
    """``SCORERS[name]`` with ``settings`` bound. ``ConfigError`` for an unknown scorer, an unknown or missing
    setting, or a value outside a ``Literal``."""
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer '{name}' (known: {', '.join(SCORERS)})")
    fn = SCORERS[name]
    params = {p.name: p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
    hints = typing.get_type_hints(fn)
    for key, value in settings.items():
        if key not in params:
            raise ConfigError(f"scorer '{name}' has no setting '{key}' (settings: {', '.join(params) or 'none'})")
        choices = typing.get_args(hints[key]) if typing.get_origin(hints.get(key)) is typing.Literal else ()
        if choices and value not in choices:
            raise ConfigError(f"scorer '{name}': {key}={value!r} is not one of {', '.join(map(repr, choices))}")
    missing = [k for k, p in params.items() if p.default is p.empty and k not in settings]
    if missing:
        raise ConfigError(f"scorer '{name}' needs {', '.join(missing)}")
    return functools.partial(fn, **settings)


__all__ = ["SCORERS", "Scorer", "Scores", "make_scorer", "model_labeller", "object_mentions"]
