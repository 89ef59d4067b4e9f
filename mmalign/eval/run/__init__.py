"""Running a model folder on an official benchmark end to end (``mmalign bench``); see ``benchmark``."""
from mmalign.eval.run.benchmark import BenchConfig, run_bench, run_benchmark
from mmalign.eval.run.produce import LIKELIHOOD_REWARD_ID, Reward

__all__ = ["LIKELIHOOD_REWARD_ID", "BenchConfig", "Reward", "run_bench", "run_benchmark"]
