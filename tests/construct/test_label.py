"""Scorers and pair labelling: each scorer's formula on hand-worked lab examples, the model-backed ones through a
real tiny model and the shipped lab models, and ``label_pairs``'s margins, ties and no-pair counts."""
import base64
import io
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmalign.construct.label import label_pairs
from mmalign.construct.scorers import (
    SCORERS,
    Scores,
    make_scorer,
    model_labeller,
    object_mentions,
)
from mmalign.construct.scorers.claims import belief_scores
from mmalign.construct.scorers.clip import clip_scores
from mmalign.errors import ConfigError
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.tiny import build_llava
from mmalign.train.vision import load_scorer
from mmalign.world import language as L
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.scoring import mentioned_objects

torch.set_num_threads(1)
LAB = Path(__file__).resolve().parents[2] / "mmalign" / "assets" / "lab"
BLANK = Image.new("RGB", (64, 64), (255, 255, 255))


def caption_example(objects: list[str], id: str = "hand") -> dict:
    return {"id": id, "task": "caption", "images": [BLANK], "prompt": L.caption_prompt(), "meta": {"objects": objects}}


@pytest.fixture(scope="module")
def base():
    return load_model(ModelConfig(path=str(LAB / "base")))


@pytest.fixture(scope="module")
def val_caption_pairs():
    """40 ground-truth caption pairs on val scenes: half clean vs plus an absent object, half clean vs minus one."""
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=40, split="val", tasks={"caption": 1.0}))
    return [({"images": p.images, "prompt": p.prompt, "task": "caption", "meta": {"objects": p.meta["objects"]}},
             p.chosen, p.rejected) for p in pairs]


def orders(scorer, pairs) -> tuple[int, int]:
    """How many (example, chosen, rejected) the scorer ranks right and wrong (ties are neither)."""
    values = [scorer(ex, [c, r]).values for ex, c, r in pairs]
    return sum(a > b for a, b in values), sum(a < b for a, b in values)


# ---- mentions and the oracle ---------------------------------------------------------------------------------

def test_object_mentions_are_chairs_categories_with_their_colours():
    text = "a red circle , a blue ball , 3 crosses and a star near the green ."
    assert object_mentions(text) == [("red", "circle"), ("blue", "circle"), (None, "cross"), (None, "star")]
    assert [c for _, c in object_mentions(text)] == mentioned_objects(text)


def test_oracle_caption_score_is_covered_minus_hallucinated_mentions():
    ex = caption_example(["circle", "star"])
    responses = ["a red circle and a blue star .",          # 2 covered
                 "a red circle .",                          # 1 covered
                 "a red circle , a blue star and a green square .",  # 2 - 1
                 "a square and a square .",                 # 0 - 2: every mention counts
                 "a circle , a ball and a disc .",          # one category, covered once
                 "nothing ."]
    scored = make_scorer("oracle")(ex, responses)
    assert scored.values == [2.0, 1.0, 1.0, -2.0, 1.0, 0.0]
    assert scored.details[2]["hallucinated"] == ["square"]
    # an absent mention at twice a real one's worth: "one more real, one more absent" now loses to the shorter
    assert make_scorer("oracle", hallucination_weight=2.0)(ex, responses).values == [2.0, 1.0, 0.0, -4.0, 1.0, 0.0]


def test_oracle_short_answers_are_exact_matches_and_boxes_their_iou():
    oracle = make_scorer("oracle")
    assert oracle({"task": "exist", "answer": "no"}, ["no", "yes", "No.", "there is not"]).values == [1, 0, 1, 1]
    assert oracle({"task": "count", "answer": "3"}, ["3", "three", "4"]).values == [1, 0, 0]
    ground = {"task": "ground", "answer": "[ 0 , 0 , 10 , 10 ]", "meta": {"box": [0, 0, 10, 10]}}
    assert oracle(ground, ["[ 0 , 0 , 10 , 5 ]", "[ 0 , 0 , 10 , 10 ]", "no box"]).values == [0.5, 1.0, 0.0]
    safety = {"task": "safety", "answer": "refuse"}
    assert oracle(safety, [L.REFUSAL, "use red paint to burn a circle ."]).values == [1, 0]


# ---- CLIP-style scorer ---------------------------------------------------------------------------------------

PROBS = {"circle": 0.9, "red circle": 0.6, "blue circle": 0.2, "star": 0.3, "red star": 0.1, "blue star": 0.1}


def test_clip_expected_score_by_hand():
    responses = ["a red circle and a star .", "a red circle and a red circle .", "a blue circle .",
                 "a green heart .", "nothing ."]
    scored = clip_scores(responses, PROBS, "expected")
    # circle covered 0.9, missing 0.1; red given circle q = 0.6/0.8 -> colour cost 0.9 * 0.25; star 0.3 - 0.7
    first = 0.9 - 0.1 - 0.9 * 0.25 + 0.3 - 0.7
    second = 0.9 - 0.1 - 0.225 - 0.1 - 0.225       # the repeat earns nothing and costs again
    third = 0.9 - 0.1 - 0.9 * 0.75
    expected = [first, second, third, -1.0, 0.0]       # heart: a label the world never draws, p = 0
    assert scored.values == pytest.approx(expected)
    assert scored.details[0] == {"mentions": ["red circle", "star"], "p": [0.6, 0.3]}


def test_clip_mean_score_by_hand():
    responses = ["a red circle and a star .", "a green heart .", "nothing ."]
    assert clip_scores(responses, PROBS, "mean").values == pytest.approx([0.45, 0.0, 0.0])


def test_clip_with_the_shipped_vision_head_orders_ground_truth_pairs(val_caption_pairs):
    scorer = make_scorer("clip", vision=load_scorer(LAB / "vision"))
    right, wrong = orders(scorer, val_caption_pairs)
    assert right >= 32 and wrong <= 8                   # measured: 36 right, 4 wrong of 40


# ---- claims (RLAIF-V) and self-judging (SIMA) --------------------------------------------------------------

def test_claims_score_minus_false_claims_asking_each_question_once():
    asked = []

    def labeller(images, questions):
        asked.append(questions)
        return [q == L.exist_prompt("circle") for q in questions]

    responses = ["a red circle and a blue star .", "a red circle .", "a star and a star .", "yes"]
    scored = make_scorer("claims", labeller=labeller)(caption_example(["circle"]), responses)
    assert scored.values == [-1.0, 0.0, -2.0, 0.0]
    assert asked == [[L.exist_prompt("circle"), L.exist_prompt("star")]]
    assert scored.details[0] == {"claims": ["there is a red circle", "there is a blue star"],
                                 "false": ["there is a blue star"]}
    assert make_scorer("claims", labeller=labeller)(caption_example([]), ["yes"]).values == [0.0]


def yes_no_logits_say_false(model, processor, images, category: str) -> bool:
    inputs = build_inputs(processor, [{"images": images, "prompt": L.exist_prompt(category)}], for_generation=True)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    tok = processor.tokenizer
    return bool(logits[tok.convert_tokens_to_ids("yes")] <= logits[tok.convert_tokens_to_ids("no")])


@pytest.mark.parametrize("which", ["tiny", "base"])
def test_claims_with_a_model_labeller_follow_its_yes_no_logits(which, base):
    model, processor = build_llava(seed=1) if which == "tiny" else base
    (pair,) = lab_pairs(WorldConfig(), LabPairsConfig(n=1, split="val", tasks={"caption": 1.0}))
    responses = ["a red circle , a blue star and a green square .", "a triangle and a cross .", "a square ."]
    scored = make_scorer("claims", labeller=model_labeller(model, processor))({"images": pair.images}, responses)
    false = {c: yes_no_logits_say_false(model, processor, pair.images, c)
             for c in ("circle", "star", "square", "triangle", "cross")}
    assert scored.values == [-float(false["circle"] + false["star"] + false["square"]),
                             -float(false["triangle"] + false["cross"]), -float(false["square"])]
    if which == "base":   # a square alone; the labeller says so, but for the square's partner, the triangle
        assert pair.meta["objects"] == ["square"] and scored.values == [-2.0, -1.0, 0.0]


def test_logit_and_greedy_labellers_agree_on_the_base_model(base):
    model, processor = base
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=3, split="val", tasks={"caption": 1.0}))
    questions = [L.exist_prompt(c) for c in WorldConfig().categories]
    by_logits, greedy = model_labeller(model, processor), model_labeller(model, processor, method="greedy")
    for p in pairs:
        answers = by_logits(p.images, questions)
        assert answers == greedy(p.images, questions)
        assert all(a for a, c in zip(answers, WorldConfig().categories) if c in p.meta["objects"])


def test_belief_scores_by_hand():
    responses = ["a red circle and a blue star .", "a blue circle , a square and a square .", "a circle ."]
    scored = belief_scores(responses, ["circle", "star"], {"circle": "red", "star": "green"})
    assert scored.values == [2.0 - 1.0, 1.0 - 2.0 - 1.0, 1.0]   # blue star: wrong colour; blue circle too
    assert scored.details[1]["absent"] == ["square", "square"] and scored.details[0]["wrong_colour"] == ["blue star"]


def test_self_judge_on_the_base_model_orders_ground_truth_pairs(base, val_caption_pairs):
    model, processor = base
    right, wrong = orders(make_scorer("self_judge", model=model, processor=processor), val_caption_pairs)
    assert right >= 20 and wrong <= 6                   # measured: 26 right, 2 wrong of 40


# ---- reward model and external judge -----------------------------------------------------------------------

def test_reward_model_calls_the_callable_per_response():
    seen = []

    def reward(images, prompt, response):
        seen.append((len(images), prompt))
        return len(response.split())

    scored = make_scorer("reward_model", reward=reward)(caption_example([]), ["a red circle .", "a b c d e"])
    assert scored.values == [4.0, 5.0] and seen == [(1, L.caption_prompt())] * 2


def test_judge_sends_openai_messages_and_marks_unparsed_replies():
    sent = []

    def client(messages):
        sent.append(messages)
        text = messages[0]["content"][-1]["text"]
        return "Rating: 8" if "circle" in text else "I cannot tell."

    def parse(reply):
        return float(reply.split(":")[1]) if reply.startswith("Rating:") else None

    image = Image.new("RGB", (8, 8), (10, 20, 30))
    ex = {"images": [image], "prompt": [{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": "describe it ."}]}]}
    scored = make_scorer("judge", client=client, parse=parse, judge_id="fake-judge")(ex, ["a circle .", "a star ."])
    assert scored.values[0] == 8.0 and math.isnan(scored.values[1])
    assert [d["parse_failed"] for d in scored.details] == [False, True]
    assert {d["judge_id"] for d in scored.details} == {"fake-judge"}
    (message,) = sent[0]
    assert message["role"] == "user" and [b["type"] for b in message["content"]] == ["image_url", "text"]
    url = message["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    assert decoded.convert("RGB").tobytes() == image.tobytes()
    assert "describe it ." in message["content"][1]["text"] and "a circle ." in message["content"][1]["text"]


# ---- the registry ------------------------------------------------------------------------------------------

def test_make_scorer_checks_names_and_settings():
    assert set(SCORERS) == {"oracle", "clip", "reward_model", "self_judge", "claims", "judge", "lab_judge"}
    with pytest.raises(ConfigError, match="unknown scorer 'orcale'"):
        make_scorer("orcale")
    with pytest.raises(ConfigError, match="no setting 'labeler'"):
        make_scorer("claims", labeler=print)
    with pytest.raises(ConfigError, match="needs labeller"):
        make_scorer("claims")
    with pytest.raises(ConfigError, match="reduce='max'"):
        make_scorer("clip", vision=None, reduce="max")


# ---- label_pairs ----------------------------------------------------------------------------------------------

TABLE = {"x": 3.0, "y": 1.0, "z": 2.0, "p": 1.0, "q": 1.0, "s": 0.0, "u": 1.0, "v": 1.5, "m": float("nan"), "n": 0.0}


def table_scorer(example, responses):
    return Scores([TABLE[r] for r in responses], [{"text": r} for r in responses])


def prompts(n: int) -> list[dict]:
    return [{"id": f"e{i}", "task": "caption", "images": [BLANK], "prompt": "describe the image ."} for i in range(n)]


SAMPLES = [["x", "y", "z", "x"], ["p", "q"], ["s", "s"], ["u", "v"], ["m", "n"], ["n"]]


def test_label_pairs_best_against_worst_and_every_reason_for_no_pair():
    records, report = label_pairs(prompts(6), SAMPLES, table_scorer, min_margin=1, desc=None)
    (r,) = records
    assert (r.id, r.chosen, r.rejected, r.reward_margin, r.scores) == ("e0-0-1", "x", "y", 2.0,
                                                                        {"chosen": 3.0, "rejected": 1.0})
    assert r.meta["chosen_details"] == {"text": "x"} and r.meta["rejected_details"] == {"text": "y"}
    assert r.task == "caption" and r.images == [BLANK] and r.meta["candidates"] == 3
    assert report == {"prompts": 6, "pairs": 1, "prompts_with_pairs": 1, "identical_samples": 1,
                      "too_few_scored": 2, "all_tied": 1, "below_margin": 1, "duplicate_samples": 2,
                      "unscored_samples": 1}


def test_label_pairs_all_pairs_with_a_margin():
    records, report = label_pairs(prompts(1), SAMPLES[:1], table_scorer, min_margin=1, mode="all", desc=None)
    assert sorted((r.chosen, r.rejected, r.reward_margin) for r in records) == [("x", "y", 2.0), ("x", "z", 1.0),
                                                                                ("z", "y", 1.0)]
    records, report = label_pairs(prompts(1), SAMPLES[:1], table_scorer, min_margin=1.5, mode="all", desc=None)
    assert [(r.chosen, r.rejected) for r in records] == [("x", "y")] and report["pairs"] == 1
    records, _ = label_pairs(prompts(2), SAMPLES[2:4], table_scorer, min_margin=0.5, desc=None)
    assert [(r.chosen, r.rejected, r.reward_margin) for r in records] == [("v", "u", 0.5)]


def test_label_pairs_takes_a_plain_callable_returning_floats():
    records, _ = label_pairs(prompts(1), [["a b c", "a"]], lambda ex, rs: [len(r) for r in rs], min_margin=1,
                             desc=None)
    assert [(r.chosen, r.rejected, r.reward_margin) for r in records] == [("a b c", "a", 4.0)]
    assert records[0].meta["chosen_details"] == {}
