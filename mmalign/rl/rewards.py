"""Reward functions for online RL (ALGORITHMS.md §3.3, §6): ``fn(completion, example, *, <settings>) -> float``.

``example`` is a lab example (``mmalign.world.tasks``) or any dict with the same keys: ``answer`` (str), ``meta``
(dict), and ``task`` for ``lab_accuracy``. ``REWARDS`` maps names to these per-completion functions; ``batched``
lifts one to a batch reward ``(completions, examples) -> list[float]``, ``reward_model_reward`` and ``judge_reward``
wrap a model callable as one, ``scorer_reward`` a data-construction scorer (the oracle, the lab judge, an external
judge: ``mmalign.construct.scorers``), and ``score_batch`` adds weighted batch rewards while keeping each one for
logging.

Answer extraction (``extract_answer``), shared by every answer reward: the content of the first complete
``<answer>...</answer>`` block when there is one; otherwise, if the text uses any of the tags ``<think>``,
``</think>``, ``<answer>``, ``</answer>`` (a malformed or truncated tagged response), no answer (""); otherwise the
whole text (a plain answer such as the lab's ``3``). VLM-R1 also reads the first ``<answer>`` block.

Numbers (``parse_numbers``): optionally signed integers and decimals, with thousands separators (``1,000``); no
fractions, exponents or number words.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence

import torch

from mmalign.world.scoring import caption_scores, iou, score_example
from mmalign.world.scoring import exact_match as lab_exact_match

log = logging.getLogger(__name__)
BatchReward = Callable[[Sequence[str], Sequence[dict]], list[float]]

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_COORD = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_COORD] * 4) + r"\]")


def extract_answer(text: str) -> str:
    """The answer part of a completion (module docstring), stripped."""
    match = _ANSWER.search(text)
    if match:
        return match.group(1).strip()
    return "" if any(tag in text for tag in TAGS) else text.strip()


def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order (module docstring)."""
    return [float(n.replace(",", "")) for n in _NUMBER.findall(text)]


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first ``[x1, y1, x2, y2]`` in ``text`` (square brackets, commas, any spaces; integers or decimals; also
    inside VLM-R1's ``{"bbox_2d": [...]}``), or None."""
    match = _BOX.search(text)
    return tuple(float(v) for v in match.groups()) if match else None


# ---- rewards ---------------------------------------------------------------------------------------------------

def think_format(completion: str, example: dict) -> float:
    """1.0 if the completion, stripped of surrounding whitespace, is exactly ``<think>...</think>`` then optional
    whitespace then ``<answer>...</answer>`` (``re.fullmatch`` of ``<think>.*?</think>\\s*<answer>.*?</answer>``,
    DOTALL) with each of the four tags exactly once, else 0.0. LMM-R1's strict format; VLM-R1's REC format also
    demands a box inside the answer (``think_format`` + ``grounding_iou`` covers that)."""
    text = completion.strip()
    return float(_FORMAT.fullmatch(text) is not None and all(text.count(tag) == 1 for tag in TAGS))


def exact_match(completion: str, example: dict) -> float:
    """1.0 if the answer equals ``example["answer"]`` after the lab's normalisation (lower case, punctuation and a
    leading "the" removed, whitespace collapsed; ``mmalign.world.scoring.normalize_answer``), else 0.0."""
    return lab_exact_match(extract_answer(completion), example["answer"])


def numeric_match(completion: str, example: dict, *, tol: float = 1e-6) -> float:
    """1.0 if the last number of the answer is within ``tol`` of the last number of ``example["answer"]``, else 0.0
    (also when either has no number). The last number is the final one in "3 + 4 = 7" and GSM8K's "#### 72"."""
    pred, gold = parse_numbers(extract_answer(completion)), parse_numbers(example["answer"])
    return float(bool(pred) and bool(gold) and abs(pred[-1] - gold[-1]) <= tol)


def count_accuracy(completion: str, example: dict) -> float:
    """Lab counting (and visual-arithmetic sums; any example whose answer is an integer): 1.0 if the answer holds
    exactly one number and it equals ``int(example["answer"])``, else 0.0. Words around it are allowed ("there are 3
    shapes"), several numbers are not ("3 or 4"). The lab's evaluation is stricter (exact string match: use
    ``lab_accuracy`` for the evaluation's own metric)."""
    numbers = parse_numbers(extract_answer(completion))
    return float(len(numbers) == 1 and numbers[0] == int(example["answer"]))


def lab_accuracy(completion: str, example: dict) -> float:
    """The lab evaluation's correctness of the answer (``mmalign.world.scoring.score_example``): POPE's yes/no parser
    for yes/no questions, exact match for short answers, IoU >= 0.5 for grounding, refusal for safety. Every lab task
    except ``caption`` (see ``chair_hallucination`` and ``object_recall``)."""
    return float(score_example(example, extract_answer(completion))["correct"])


def grounding_iou(completion: str, example: dict) -> float:
    """VLM-R1's continuous REC reward: ``IoU(box from the answer, example["meta"]["box"])`` in [0, 1]; 0.0 when no box
    parses (``parse_box``).

    Boxes are ``[x1, y1, x2, y2]`` in pixels with x2/y2 exclusive (the lab's convention, ``scoring.iou``). When
    ``meta["input_size"] = (width, height)`` is present, the predicted box is in the coordinates of the image the model
    saw (for Qwen2-VL, ``image_grid_thw[2] * 14`` by ``image_grid_thw[1] * 14``) and is rescaled to the original
    ``meta["image_size"]`` (an int for a square image, or ``(width, height)``), as VLM-R1's ``resize_bbox``; without
    it the box is read in original pixels, which is what the lab writes. VLM-R1's IoU counts an overlap only when it
    is wider and taller than one pixel; otherwise the two agree.
    """
    box = parse_box(extract_answer(completion))
    if box is None:
        return 0.0
    meta = example["meta"]
    if "input_size" in meta:
        size = meta["image_size"]
        width, height = (size, size) if isinstance(size, int) else size
        sx, sy = width / meta["input_size"][0], height / meta["input_size"][1]
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return iou(box, meta["box"])


def box_format(completion: str, example: dict) -> float:
    """The format reward of a plain grounding answer (VLM-R1's format reward for answers without
    ``<think>``/``<answer>`` tags): 1.0 if the answer is exactly one box ``[x1, y1, x2, y2]`` with ``x1 < x2`` and
    ``y1 < y2`` inside the image (``0 <= x1``, ``x2 <= width``, likewise for y; ``meta["input_size"]`` when given,
    else ``meta["image_size"]``), else 0.0. It rewards a usable box whatever its place, so the IoU reward is the
    one that moves it."""
    text = extract_answer(completion)
    match = _BOX.fullmatch(text.strip())
    if match is None:
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in match.groups())
    meta = example["meta"]
    size = meta.get("input_size", meta["image_size"])
    width, height = (size, size) if isinstance(size, int | float) else size
    return float(0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height)


def chair_hallucination(completion: str, example: dict) -> float:
    """Minus the number of hallucinated object mentions in a caption (CHAIR-i's numerator, every mention counted) against
    the lab's ground truth ``meta["objects"]`` (``scoring.caption_scores``). 0 is best; pair it with ``object_recall``
    so that saying nothing is not the optimum."""
    return -float(caption_scores(extract_answer(completion), example["meta"]["objects"])["n_hallucinated_mentions"])


def object_recall(completion: str, example: dict) -> float:
    """Fraction of the present object categories (``meta["objects"]``) the caption mentions, in [0, 1]."""
    present = set(example["meta"]["objects"])
    return len(caption_scores(extract_answer(completion), list(present))["covered"]) / len(present)


def length_penalty(completion: str, example: dict, *, max_words: int = 64, coef: float = 1.0) -> float:
    """Fact-RLHF's linear length penalty on words: ``-coef * min(|y|, max_words) / max_words`` in ``[-coef, 0]``,
    ``|y|`` the whitespace-separated words of the whole completion (one lab token is one word). The token-level form,
    with LLaVA-RLHF's ``-10 * |y| / 896``, is ``shaping.fact_rlhf_scores``."""
    return -coef * min(len(completion.split()), max_words) / max_words


def fact_rlhf_correctness(completion: str, example: dict) -> float:
    """Fact-RLHF's symbolic correctness bonus (LLaVA-RLHF ``ppo_trainer.py``, ``rollout``), by the answer's type:

    * multiple choice (answer one of A-D): 1.0 if the answer starts with "X." or contains "correct option is X.";
    * yes/no with ground truth "no": +0.5 if the answer's first word is "no", -0.5 if it is "yes";
    * yes/no with ground truth "yes", and anything else: 0.0 (LLaVA-RLHF gives no bonus there either).

    Deviation: LLaVA-RLHF tests ``startswith("No")`` case-sensitively; the lab writes lower case, so we compare the
    first word, lower-cased, without trailing punctuation (which also keeps "Not sure" from counting as "No").
    The shaped reward multiplies this by ``correct_coef = 2`` (``shaping.fact_rlhf_scores``).
    """
    answer, text = example["answer"].strip(), extract_answer(completion)
    if len(answer) == 1 and answer in "ABCD":
        return float(text.startswith(f"{answer}.") or f"correct option is {answer}." in text)
    if answer.lower() != "no":
        return 0.0
    first = text.split()[0].lower().rstrip(".,!?") if text.split() else ""
    return {"no": 0.5, "yes": -0.5}.get(first, 0.0)


REWARDS: dict[str, Callable[..., float]] = {
    "think_format": think_format, "exact_match": exact_match, "numeric_match": numeric_match,
    "count_accuracy": count_accuracy, "lab_accuracy": lab_accuracy, "grounding_iou": grounding_iou,
    "box_format": box_format,
    "chair_hallucination": chair_hallucination, "object_recall": object_recall, "length_penalty": length_penalty,
    "fact_rlhf_correctness": fact_rlhf_correctness,
}


# ---- batch rewards -----------------------------------------------------------------------------------------------

def batched(fn: Callable[..., float], **settings) -> BatchReward:
    """A per-completion reward (with its settings) as a batch reward."""
    def reward(completions: Sequence[str], examples: Sequence[dict]) -> list[float]:
        return [fn(c, e, **settings) for c, e in zip(completions, examples, strict=True)]
    return reward


def reward_model_reward(scorer: Callable[[Sequence[str], Sequence[dict]], Sequence[float]]) -> BatchReward:
    """A reward model as a batch reward: ``scorer(completions, examples)`` returns one score per completion (a scalar
    head on the image, prompt and completion; Fact-RLHF's scorer also reads ground-truth captions). Scores pass
    through unchanged, as floats."""
    def reward(completions: Sequence[str], examples: Sequence[dict]) -> list[float]:
        scores = [float(s) for s in scorer(completions, examples)]
        if len(scores) != len(completions):
            raise ValueError(f"reward model returned {len(scores)} scores for {len(completions)} completions")
        return scores
    return reward


def parse_rating(verdict: str | float, *, max_score: float = 10.0) -> float:
    """A judge's verdict as a reward in [0, 1]: a number as is, a text by its first number ("Rating: 7/10" -> 7,
    "[[8]]" -> 8); clipped to ``[0, max_score]`` and divided by ``max_score``; 0.0 when the text has no number."""
    if isinstance(verdict, str):
        numbers = parse_numbers(verdict)
        if not numbers:
            return 0.0
        verdict = numbers[0]
    return min(max(float(verdict), 0.0), max_score) / max_score


def judge_reward(judge: Callable[[Sequence[str], Sequence[dict]], Sequence[str | float]], *,
                 max_score: float = 10.0) -> BatchReward:
    """An LLM/VLM judge as a batch reward: ``judge(completions, examples)`` returns one verdict per completion (a
    rating, or text that contains one), read by ``parse_rating``."""
    def reward(completions: Sequence[str], examples: Sequence[dict]) -> list[float]:
        verdicts = list(judge(completions, examples))
        if len(verdicts) != len(completions):
            raise ValueError(f"judge returned {len(verdicts)} verdicts for {len(completions)} completions")
        return [parse_rating(v, max_score=max_score) for v in verdicts]
    return reward


def scorer_reward(scorer: Callable[[dict, list[str]], object]) -> BatchReward:
    """A data-construction scorer (``mmalign.construct.scorers``: ``scorer(example, responses) -> Scores | list``)
    as a batch reward. Consecutive rows that share an example (a group's completions) are scored in one call, as
    when sampled pairs are labelled. A completion the scorer could not score (NaN: a judge reply that did not
    parse) gets the mean of its group's scored completions, so it carries no advantage within the group; a group
    with none scored gets 0. Each batch with such completions logs a warning with their count."""
    from mmalign.construct.scorers import Scores

    def reward(completions: Sequence[str], examples: Sequence[dict]) -> list[float]:
        out, unscored, start = [], 0, 0
        while start < len(examples):
            end = start + 1
            while end < len(examples) and examples[end] is examples[start]:
                end += 1
            values = Scores.of(scorer(examples[start], list(completions[start:end]))).values
            if len(values) != end - start:
                raise ValueError(f"scorer returned {len(values)} scores for {end - start} completions")
            scored = [float(v) for v in values if not math.isnan(v)]
            fill = sum(scored) / len(scored) if scored else 0.0
            unscored += end - start - len(scored)
            out += [fill if math.isnan(v) else float(v) for v in values]
            start = end
        if unscored:
            log.warning("scorer: %d of %d completions could not be scored and got their group's mean", unscored,
                        len(completions))
        return out
    return reward


def score_batch(rewards: dict[str, BatchReward], completions: Sequence[str], examples: Sequence[dict], *,
                weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_k w_k * r_k`` over the named batch rewards (TRL's ``reward_weights``, default 1 each): the total ``(B,)``
    and each reward's ``(B,)`` values for logging. ``weights`` must name exactly the rewards."""
    weights = weights if weights is not None else dict.fromkeys(rewards, 1.0)
    if set(weights) != set(rewards):
        raise ValueError(f"weights name {sorted(weights)}, rewards are {sorted(rewards)}")
    per_reward = {name: torch.tensor(fn(completions, examples), dtype=torch.float32) for name, fn in rewards.items()}
    total = sum(weights[name] * values for name, values in per_reward.items())
    return total, per_reward
