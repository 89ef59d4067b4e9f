"""VLM reward models: a scalar head on an image-text backbone (``model``), the Bradley–Terry loss (``loss``),
scoring with a saved model (``score``) and its trainer (``train``, ``mmalign reward``)."""
from mmalign.reward.loss import bradley_terry
from mmalign.reward.model import RewardModel, last_token_index
from mmalign.reward.score import RewardScorer, load_reward_model, pairwise_accuracy

__all__ = ["RewardModel", "RewardScorer", "bradley_terry", "last_token_index", "load_reward_model",
           "pairwise_accuracy"]
