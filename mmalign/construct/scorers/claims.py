"""Scorers that verify a response claim by claim with a model's yes/no answers: RLAIF-V and SIMA on the lab.

RLAIF-V (Yu et al., CVPR 2025; ALGORITHMS.md §5.4), divide and conquer: split a response into atomic claims, turn
each into a yes/no question, let a labeller model answer it about the image; a claim is true iff ``P(yes) >
P(no)`` on the answer's first token; ``score(y) = #true - #claims = -#false``, and pairs need scores differing by
at least 1 (``label_pairs(min_margin=1)``). On the lab the divide step is exact: one claim per object mention
("there is a red circle"), asked as the lab's own existence question ``is there a circle in the image ?`` (the
question the labeller was trained on names a category, so a claim's colour is not checked). As in the paper,
a response that claims nothing scores 0, the best score: length is left to the filters.

SIMA (Wang et al. 2024; §5.3) has the policy critique its own answers on the accuracy of object descriptions,
attributes and relations. The lab's tokenizer cannot write a critique prompt, so ``self_judge`` asks the policy
the lab's own questions instead and scores a response by the oracle's formula with the policy's beliefs in place
of the ground truth: of the categories the responses mention, it believes present those it answers "yes" to in
``is there a X in the image ?``, and the colour it believes each has is its most probable answer to ``what colour
is the X ?``. ``score = |believed categories mentioned| - #mentions of categories it believes absent - #mentions
whose colour differs from its believed colour`` (relations: lab captions state none). Where one category appears
twice in different colours, one of the two mentions counts as a wrong colour: the question names no instance.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mmalign.construct.scorers.mentions import claim_text, object_mentions
from mmalign.construct.scorers.scores import Scores
from mmalign.models.generate import answer_probs, sample_responses
from mmalign.world import language as L
from mmalign.world.scoring import parse_yes_no

YES_NO = {"yes": ["yes", "Yes"], "no": ["no", "No"]}
COLOURS = {c: [c] for c in L.ALL_COLOURS}
Labeller = Callable[[list, list[str]], list[bool]]   # (images, yes/no questions) -> answered "yes"


def model_labeller(model, processor, *, method: Literal["logits", "greedy"] = "logits",
                   batch_size: int = 64) -> Labeller:
    """A labeller from a model: ``logits`` reads ``P(yes) > P(no)`` on the first answer token (RLAIF-V's rule);
    ``greedy`` decodes an answer and reads it with the official POPE parser."""
    def label(images: list, questions: list[str]) -> list[bool]:
        examples = [{"images": list(images), "prompt": q} for q in questions]
        if method == "logits":
            return [p["yes"] > p["no"] for p in answer_probs(model, processor, examples, YES_NO, batch_size=batch_size)]
        texts = sample_responses(model, processor, examples, temperature=0.0, max_new_tokens=4,
                                 batch_size=batch_size, desc=None).texts
        return [parse_yes_no(t[0]) == "yes" for t in texts]
    return label


def claims(example: dict, responses: list[str], *, labeller: Labeller) -> Scores:
    """RLAIF-V's divide-and-conquer score ``-#false claims`` (module docstring); each distinct question is asked
    once per example. Details: the claims and the false ones."""
    mentions = [object_mentions(r) for r in responses]
    questions = list(dict.fromkeys(L.exist_prompt(category) for ms in mentions for _, category in ms))
    yes = dict(zip(questions, labeller(example["images"], questions))) if questions else {}
    details = [{"claims": [claim_text(*m) for m in ms],
                "false": [claim_text(*m) for m in ms if not yes[L.exist_prompt(m[1])]]} for ms in mentions]
    return Scores([-float(len(d["false"])) for d in details], details)


def self_judge(example: dict, responses: list[str], *, model, processor, batch_size: int = 64) -> Scores:
    """SIMA on the lab: the policy's own answers about the image stand in for the ground truth (module
    docstring)."""
    def ask(questions: list[str], options: dict) -> list[dict[str, float]]:
        examples = [{"images": list(example["images"]), "prompt": q} for q in questions]
        return answer_probs(model, processor, examples, options, batch_size=batch_size) if questions else []

    mentioned = list(dict.fromkeys(c for r in responses for _, c in object_mentions(r)))
    believed = [c for c, p in zip(mentioned, ask([L.exist_prompt(c) for c in mentioned], YES_NO)) if p["yes"] > p["no"]]
    asked = list(dict.fromkeys(c for r in responses for col, c in object_mentions(r) if col and c in believed))
    colours = {c: max(p, key=p.get) for c, p in zip(asked, ask([L.colour_prompt(c) for c in asked], COLOURS))}
    return belief_scores(responses, believed, colours)


def belief_scores(responses: list[str], believed: list[str], colours: dict[str, str]) -> Scores:
    """``|believed categories mentioned| - #mentions of the others - #mentions of a believed category in a colour
    other than colours[category]``. Details: per response the covered, absent and wrong-colour mentions."""
    values, details = [], []
    for response in responses:
        mentions = object_mentions(response)
        covered = list(dict.fromkeys(cat for _, cat in mentions if cat in believed))
        absent = [cat for _, cat in mentions if cat not in believed]
        wrong = [f"{col} {cat}" for col, cat in mentions if col and cat in believed and colours[cat] != col]
        values.append(float(len(covered) - len(absent) - len(wrong)))
        details.append({"believed": believed, "covered": covered, "absent": absent, "wrong_colour": wrong})
    return Scores(values, details)
