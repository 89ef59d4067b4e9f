"""Text-side negatives on lab captions: valid captions, exactly the injected error under CHAIR, spans on the
changed phrase, the world's co-occurrence driving insertions; the Rewriter interface and word-diff spans."""
from collections import Counter

import numpy as np
import pytest

from mmalign.construct.text import (
    INJECTIONS,
    changed_spans,
    inject,
    inject_negative,
    lab_rewriter,
    parse_caption,
    rewrite_negative,
)
from mmalign.data.preference import PreferenceRecord
from mmalign.world import language as L
from mmalign.world.scenes import WorldConfig, sample_scene
from mmalign.world.scoring import caption_scores, chair, mentioned_objects
from mmalign.world.tasks import clean_caption, world_stats

WORLD = WorldConfig()
SCENES = [sample_scene(WORLD, "train", i) for i in range(150)]


def objects(caption: str) -> list[tuple[str, str]]:
    return [(p.colour, p.category) for p in parse_caption(caption)]


def objects_outside(caption: str, spans: list) -> list[tuple[str, str]]:
    """The caption's objects without the phrases the spans cover."""
    return [(p.colour, p.category) for p in parse_caption(caption) if [p.start, p.end] not in spans]


def injections(kind: str) -> list[tuple]:
    """(scene, clean caption, injection) for every scene where ``kind`` applies."""
    out = []
    for i, scene in enumerate(SCENES):
        clean = clean_caption(scene)
        inj = inject(WORLD, clean, kind, np.random.default_rng(i))
        if inj is not None:
            out.append((scene, clean, inj))
    return out


def test_parse_caption_reads_every_clean_caption_and_refuses_other_text():
    for scene in SCENES[:30]:
        text = clean_caption(scene)
        phrases = parse_caption(text)
        assert [(p.colour, p.category) for p in phrases] == [(o.colour, o.category) for o in scene.objects]
        assert all(text[p.start:p.end] == f"a {p.colour} {p.category}" for p in phrases)
    for bad in ("a red circle", "a red circle , a blue star .", "a pink circle .", "there is a red circle .", ""):
        with pytest.raises(ValueError, match="not a lab caption"):
            parse_caption(bad)


@pytest.mark.parametrize("kind", list(INJECTIONS))
def test_injected_captions_are_valid_lab_captions_in_canonical_order(kind):
    made = injections(kind)
    assert len(made) > 100
    for _, clean, inj in made:
        objs = objects(inj.text)   # raises unless the world would phrase it this way
        assert inj.text != clean and inj.kind == kind
        assert all(col in WORLD.colours and cat in WORLD.categories for col, cat in objs)
        order = [L.ALL_CATEGORIES.index(c) for _, c in objs]
        assert order == sorted(order)


def test_insert_adds_exactly_one_hallucinated_object_and_its_span_points_at_it():
    made = injections("insert")
    for scene, clean, inj in made:
        s = caption_scores(inj.text, scene.categories)
        assert s["hallucinated"] == [inj.change["category"]] and s["n_hallucinated_mentions"] == 1
        assert set(s["covered"]) == set(scene.categories)
        ((start, end),) = inj.spans
        assert inj.text[start:end] == f"a {inj.change['colour']} {inj.change['category']}" and inj.source_spans == []
        assert objects_outside(inj.text, inj.spans) == objects(clean)
    m = chair([inj.text for _, _, inj in made], [sc.categories for sc, _, _ in made])
    n_mentions = sum(len(sc.objects) + 1 for sc, _, _ in made)
    assert m["chair_s"] == 1.0 and m["chair_i"] == pytest.approx(len(made) / n_mentions) and m["recall"] == 1.0


def test_replace_swaps_one_present_object_for_an_absent_one_in_the_same_colour():
    for scene, clean, inj in injections("replace"):
        s = caption_scores(inj.text, scene.categories)
        new, was = inj.change["category"], inj.change["was"]
        assert s["hallucinated"] == [new] and set(scene.categories) - set(s["covered"]) == {was}
        ((start, end),), ((s0, e0),) = inj.spans, inj.source_spans
        assert inj.text[start:end] == f"a {inj.change['colour']} {new}"
        assert clean[s0:e0] == f"a {inj.change['colour']} {was}"
        assert len(inj.text.split()) == len(clean.split())   # length-neutral


def test_colour_changes_one_attribute_and_no_object():
    for scene, clean, inj in injections("colour"):
        s = caption_scores(inj.text, scene.categories)
        assert s["hallucinated"] == [] and set(s["covered"]) == set(scene.categories)
        truth = Counter((o.colour, o.category) for o in scene.objects)
        written = Counter(objects(inj.text))
        ((new_colour, cat),), ((old_colour, old_cat),) = written - truth, truth - written
        assert cat == old_cat == inj.change["category"] and new_colour == inj.change["colour"] != old_colour
        ((start, end),), ((s0, e0),) = inj.spans, inj.source_spans
        assert inj.text[start:end] == f"a {new_colour} {cat}" and clean[s0:e0] == f"a {old_colour} {cat}"


def test_count_mentions_one_present_object_once_too_often():
    for scene, clean, inj in injections("count"):
        s = caption_scores(inj.text, scene.categories)
        assert s["hallucinated"] == [] and s["n_mentions"] == len(scene.objects) + 1
        assert Counter(mentioned_objects(inj.text)) - Counter(scene.categories) == Counter([inj.change["category"]])
        ((start, end),) = inj.spans
        assert inj.text[start:end] == f"a {inj.change['colour']} {inj.change['category']}"
        assert objects_outside(inj.text, inj.spans) == objects(clean)   # the span is the added mention


def test_drop_leaves_out_one_object_and_marks_it_in_the_original():
    made = injections("drop")
    for scene, clean, inj in made:
        s = caption_scores(inj.text, scene.categories)
        assert s["hallucinated"] == [] and set(scene.categories) - set(s["covered"]) == {inj.change["category"]}
        ((s0, e0),) = inj.source_spans
        assert inj.spans == [] and clean[s0:e0] == f"a {inj.change['colour']} {inj.change['category']}"
        assert objects_outside(clean, inj.source_spans) == objects(inj.text)
    assert all(len(sc.objects) >= 2 for sc, _, _ in made)


def test_kinds_that_cannot_apply_give_none():
    full = L.caption_text([("red", c) for c in WORLD.categories])
    rng = np.random.default_rng(0)
    assert inject(WORLD, full, "insert", rng) is None and inject(WORLD, full, "replace", rng) is None
    assert inject(WORLD, "a red circle .", "drop", rng) is None
    assert inject(WorldConfig(colours=["red"]), "a red circle .", "colour", rng) is None
    with pytest.raises(ValueError, match="unknown injection 'negate'.*drop"):
        inject(WORLD, "a red circle .", "negate", rng)


def test_insertions_follow_the_worlds_co_occurrence():
    _, co = world_stats(WORLD)
    absent = [c for c in WORLD.categories if c != "circle"]
    expected = co["circle"]["star"] / sum(co["circle"][c] for c in absent)
    picks = Counter(inject(WORLD, "a red circle .", "insert", np.random.default_rng(s)).change["category"]
                    for s in range(600))
    assert abs(picks["star"] / 600 - expected) < 0.06 and picks.most_common(1)[0][0] == "star"
    assert set(picks) == set(absent)


def test_same_rng_same_injection():
    clean = clean_caption(SCENES[1])
    for kind in INJECTIONS:
        first, again = (inject(WORLD, clean, kind, np.random.default_rng(9)) for _ in range(2))
        assert first == again


def record(chosen: str, id: str = "r0") -> PreferenceRecord:
    return PreferenceRecord(id=id, prompt=L.caption_prompt(), images=[], chosen=chosen, rejected="a red star .",
                            reward_margin=1.0, meta={"kind": "caption_plus"})


def test_inject_negative_makes_a_pair_with_ddpo_spans():
    clean = clean_caption(SCENES[1])
    pair = inject_negative(WORLD, record(clean), "replace", seed=3)
    again = inject_negative(WORLD, record(clean), "replace", seed=3)
    assert pair == again and pair.id == "r0-inject_replace" and pair.chosen == clean
    assert pair.rejected != clean and objects(pair.rejected)
    ((s0, e0),), ((s1, e1),) = pair.chosen_spans, pair.rejected_spans
    assert clean[s0:e0].startswith("a ") and pair.rejected[s1:e1].startswith("a ")
    assert pair.meta["negative"] == "inject_replace" and pair.meta["kind"] == "caption_plus"
    assert pair.reward_margin is None   # the source pair's margin was about its own rejected answer
    assert inject_negative(WORLD, record("a red circle ."), "drop") is None


def test_lab_rewriter_is_a_deterministic_one_error_rewriter():
    rewrite = lab_rewriter(WORLD, seed=1)
    for scene in SCENES[:60]:
        clean = clean_caption(scene)
        out = rewrite(clean)
        assert out == rewrite(clean) and out != clean
        s = caption_scores(out, scene.categories)
        truth = Counter((o.colour, o.category) for o in scene.objects)
        assert s["n_hallucinated_mentions"] + sum((Counter(objects(out)) - truth).values()) <= 2
        assert sum((Counter(objects(out)) - truth).values()) == 1   # exactly one phrase is new
    assert lab_rewriter(WORLD, kinds=("drop",))("a red circle .") == "a red circle ."


def test_rewrite_negative_takes_any_rewriter_and_spans_the_changed_words():
    pair = rewrite_negative(record("a red circle and a blue star ."), lambda t: t.replace("star", "moon"))
    assert pair.rejected == "a red circle and a blue moon ."
    ((s0, e0),), ((s1, e1),) = pair.chosen_spans, pair.rejected_spans
    assert pair.chosen[s0:e0] == "star" and pair.rejected[s1:e1] == "moon" and pair.meta["negative"] == "rewrite"
    assert rewrite_negative(record("a red circle ."), lambda t: t) is None


def test_changed_spans_by_hand():
    assert changed_spans("a red circle .", "a blue circle .") == ([[2, 5]], [[2, 6]])
    assert changed_spans("a red circle .", "a red circle and a star .") == ([], [[13, 23]])
    assert changed_spans("a red circle and a star .", "a red circle .") == ([[13, 23]], [])
    assert changed_spans("same text", "same text") == ([], [])
