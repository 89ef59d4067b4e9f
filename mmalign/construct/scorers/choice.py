"""A scorer chosen in a config: what ``mmalign iterate`` and online DPO label their sampled pairs with.

| ``name``       | labels with                                                                        |
|----------------|------------------------------------------------------------------------------------|
| ``oracle``     | the lab's ground truth (the default on the lab); ``hallucination_weight: W`` prices an absent mention at W |
| ``reward_model`` | a reward-model folder (``mmalign reward``), ``reward_model: DIR``                |
| ``lab_judge``  | the lab judge's 1-10 rating                                                        |
| ``judge``      | an OpenAI-compatible judge's 1-10 rating (``judge.*``; a reply that does not parse is left out) |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmalign.construct.scorers import Scorer, make_scorer
from mmalign.errors import ConfigError
from mmalign.judge.client import JudgeConfig


@dataclass
class ScorerConfig:
    name: Literal["oracle", "reward_model", "lab_judge", "judge"] = "oracle"
    reward_model: str = ""         # reward_model: the folder
    hallucination_weight: float = 1.0   # oracle: what an absent mention costs against a real one's +1 (captions)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def validate(self) -> None:
        if self.hallucination_weight != 1.0 and self.name != "oracle":
            raise ConfigError(f"scorer.hallucination_weight is the oracle's setting (scorer.name is '{self.name}')")
        if self.name == "reward_model" and not self.reward_model:
            raise ConfigError("scorer.name=reward_model needs scorer.reward_model=<reward-model folder>")


def build_scorer(cfg: ScorerConfig) -> Scorer:
    if cfg.name == "reward_model":
        from mmalign.reward.score import load_reward_model
        return make_scorer("reward_model", reward=load_reward_model(cfg.reward_model))
    if cfg.name == "judge":
        from mmalign.judge.client import JudgeClient
        from mmalign.judge.parse import parse_rating
        client = JudgeClient(cfg.judge)
        return make_scorer("judge", client=lambda messages: client.chat(messages).text, parse=parse_rating,
                           judge_id=client.judge["id"])
    if cfg.name == "oracle":
        return make_scorer("oracle", hallucination_weight=cfg.hallucination_weight)
    return make_scorer(cfg.name)
