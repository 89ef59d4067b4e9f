"""``mmalign bench`` end to end on the official-layout fixtures with the shipped lab model: results equal
``official.evaluate`` on the same responses, an interrupted run resumes with only the missing items, foreign
caches are refused, missing images are named, reward and judged benchmarks (a Python judge and ``mmalign serve``
over HTTP), and the command line."""
import base64
import contextlib
import dataclasses
import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image

import mmalign
from mmalign.cli import main
from mmalign.errors import MMAlignError
from mmalign.eval import official
from mmalign.eval.official import BENCHMARKS, evaluate
from mmalign.eval.official.judge import Judge
from mmalign.eval.run import Reward, produce, run_benchmark
from mmalign.eval.run.judge import client_judge
from mmalign.judge.client import JudgeConfig
from mmalign.models.load import ModelConfig, load_model
from mmalign.serve import ServeConfig, start_server

LAB_BASE = str(Path(mmalign.__file__).parent / "assets" / "lab" / "base")
FIXTURES = Path(__file__).parent / "official" / "fixtures"
POPE = FIXTURES / "pope"


def png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (seed * 53 % 256, seed * 97 % 256, 80)).save(path, format="PNG")
    return path


def b64_png(seed: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (seed * 53 % 256, 40, 200)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def coco(tmp_path) -> Path:
    """The POPE fixture's COCO images, as small PNGs in an image folder."""
    root = tmp_path / "val2014"
    for k, name in enumerate(sorted({it["image"] for it in official.pope.load(POPE)})):
        png(root / name, k)
    return root


def cached(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()[1:]]


def test_pope_results_equal_official_evaluate_on_the_responses(coco, tmp_path):
    out = tmp_path / "run"
    result = run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, batch_size=4, max_new_tokens=6)
    items = official.pope.load(POPE)
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [it["id"] for it in items]
    assert result["metrics"] == evaluate("pope", items, [r["response"] for r in rows])["metrics"]
    # the responses are the model's own greedy answers to the official prompt with the item's image
    model, processor = load_model(ModelConfig(path=LAB_BASE))
    examples = [{"images": [Image.open(coco / it["image"]).convert("RGB")], "prompt": official.pope.prompt(it)}
                for it in items]
    assert [r["response"] for r in rows] == produce.generate(model, processor, examples, max_new_tokens=6,
                                                            batch_size=len(examples))
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "pope" and saved["version"] == BENCHMARKS["pope"].version
    assert saved["generation"] == {"decoding": "greedy", "max_new_tokens": 6, "dtype": "float32"}
    assert "| random/accuracy |" in (out / "report.md").read_text()


def test_an_interrupted_run_resumes_with_only_the_missing_items(coco, tmp_path, monkeypatch):
    real, asked = produce.generate, []

    def stop_after_first_batch(model, processor, examples, **kw):
        if asked:
            raise KeyboardInterrupt
        asked.append([e["prompt"] for e in examples])
        return real(model, processor, examples, **kw)

    monkeypatch.setattr(produce, "generate", stop_after_first_batch)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, batch_size=4, max_new_tokens=6)
    first = {r["id"] for r in cached(out)}
    assert len(first) == 4
    with (out / "responses.jsonl").open("a") as f:
        f.write('{"i": 9, "id": "random/')           # a crash in the middle of a write

    def recording(model, processor, examples, **kw):
        asked.append([e["prompt"] for e in examples])
        return real(model, processor, examples, **kw)

    monkeypatch.setattr(produce, "generate", recording)
    asked.clear()
    resumed = run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, batch_size=4, max_new_tokens=6)
    assert sum(map(len, asked)) == 6                 # the 10 items less the 4 cached
    ids = [r["id"] for r in cached(out)]
    assert len(ids) == len(set(ids)) == 10 and set(ids[:4]) == first
    fresh = run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=tmp_path / "fresh", batch_size=4,
                          max_new_tokens=6)
    assert resumed["metrics"] == fresh["metrics"]
    asked.clear()
    run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, batch_size=4, max_new_tokens=6)
    assert asked == []                               # a complete cache generates nothing


def test_a_cache_from_another_version_model_or_setting_is_refused(coco, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, batch_size=8, max_new_tokens=6)
    before = (out / "responses.jsonl").read_text()
    with pytest.raises(MMAlignError, match="max_new_tokens"):
        run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, max_new_tokens=7)
    other_model = tmp_path / "model"
    other_model.mkdir()
    for f in Path(LAB_BASE).iterdir():
        (other_model / f.name).write_bytes(f.read_bytes())
    with pytest.raises(MMAlignError, match="model"):
        run_benchmark(str(other_model), "pope", POPE, image_root=coco, out=out, max_new_tokens=6)
    monkeypatch.setitem(BENCHMARKS, "pope", dataclasses.replace(BENCHMARKS["pope"], version="2"))
    with pytest.raises(MMAlignError, match="version: cached '1', this run '2'"):
        run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=out, max_new_tokens=6)
    assert (out / "responses.jsonl").read_text() == before       # nothing mixed in


def test_missing_images_name_the_file_the_item_and_the_field(coco, tmp_path):
    (coco / "COCO_val2014_000000210789.jpg").unlink()
    with pytest.raises(MMAlignError) as e:
        run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=tmp_path / "a")
    assert f"item random/4: field 'image': image file not found: {coco / 'COCO_val2014_000000210789.jpg'}" \
        in str(e.value)
    with pytest.raises(MMAlignError, match="item random/1: field 'image': 'COCO_val2014_000000310196.jpg' is a "
                                           r"file name; give the image folder \(--images DIR\)"):
        run_benchmark(LAB_BASE, "pope", POPE, out=tmp_path / "b")
    with pytest.raises(MMAlignError, match=r"item existence/1: field 'image': image file not found: .*/existence/"):
        run_benchmark(LAB_BASE, "mme", FIXTURES / "mme", image_root=tmp_path, out=tmp_path / "c")
    assert not (tmp_path / "a" / "responses.jsonl").exists()     # checked before anything runs


def test_mmbench_reads_base64_cells_and_rows_that_share_an_image(tmp_path):
    head = "index\tquestion\thint\tA\tB\tanswer\tcategory\tl2-category\timage\n"
    rows = [("1", "What is shown?", "a circle", "a square", "A", b64_png(1)),
            ("1000001", "What is shown?", "a square", "a circle", "B", "1"),
            ("2", "Which colour?", "red", "blue", "B", b64_png(2))]
    tsv = tmp_path / "mmbench.tsv"
    tsv.write_text(head + "".join(f"{i}\t{q}\t\t{a}\t{b}\t{ans}\tcat\tl2\t{img}\n" for i, q, a, b, ans, img in rows))
    items = BENCHMARKS["mmbench"].load(tsv)
    assert items[1]["image"] == items[0]["image"]             # row 1000001 shares row 1's image
    result = run_benchmark(LAB_BASE, "mmbench", tsv, out=tmp_path / "run", batch_size=2, max_new_tokens=4)
    responses = [r["response"] for r in cached(tmp_path / "run")]
    order = [r["id"] for r in cached(tmp_path / "run")]
    by_id = dict(zip(order, responses))
    assert result["metrics"] == evaluate("mmbench", items, [by_id[it["id"]] for it in items])["metrics"]


def _reward_file(tmp_path: Path) -> tuple[Path, Path]:
    rows = [{"id": "p1", "prompt": "what is in the image ?", "chosen": "a red circle .", "rejected": "a dog .",
             "image": "mcq/1.png"},
            {"id": "p1", "prompt": "what is in the image ?", "chosen": "a red circle .", "rejected": "two cats .",
             "image": "mcq/1.png"},
            {"id": "p2", "prompt": "describe the image .", "chosen": "a blue square .", "rejected": "a blue square",
             "image": "long/2.png"}]
    data = tmp_path / "rb" / "mm_reward_bench.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    png(data.parent / "mcq" / "1.png", 1)
    png(data.parent / "long" / "2.png", 2)
    return data, data.parent


def test_reward_benchmarks_score_the_mean_log_likelihood_or_a_given_reward(tmp_path):
    data, root = _reward_file(tmp_path)
    items = BENCHMARKS["mm_rlhf_rewardbench"].load(data)
    result = run_benchmark(LAB_BASE, "mm_rlhf_rewardbench", data, image_root=root, out=tmp_path / "ll")
    pairs = [r["response"] for r in cached(tmp_path / "ll")]
    assert result["reward"] == produce.LIKELIHOOD_REWARD_ID
    assert result["metrics"] == evaluate("mm_rlhf_rewardbench", items, pairs)["metrics"]
    model, processor = load_model(ModelConfig(path=LAB_BASE))
    one = produce.likelihood_rewards(model, processor, [{"images": [Image.open(root / "mcq" / "1.png")],
                                                         "prompt": items[0]["prompt"]}],
                                     [[items[0]["chosen"], items[0]["rejected"]]])
    assert pairs[0] == pytest.approx(one[0], abs=1e-5)        # batching does not change a row's reward

    seen = []
    length = Reward(lambda images, prompt, response: seen.append(len(images)) or len(response), "characters")
    result = run_benchmark("no-model-is-loaded", "mm_rlhf_rewardbench", data, image_root=root,
                           out=tmp_path / "len", reward=length)
    assert result["reward"] == "characters" and seen == [1] * 6
    lengths = [[len(it["chosen"]), len(it["rejected"])] for it in items]
    assert result["metrics"] == evaluate("mm_rlhf_rewardbench", items, lengths)["metrics"]
    with pytest.raises(MMAlignError, match="item p3: field 'video': video/3.mp4: video rows cannot be run"):
        run_benchmark(LAB_BASE, "mm_rlhf_rewardbench", FIXTURES / "mm_reward_bench.jsonl", image_root=root,
                      out=tmp_path / "video", reward=length)


def test_a_judged_benchmark_with_a_python_judge(tmp_path):
    root = tmp_path / "mmhal_images"
    for k in range(1, 5):
        png(root / f"{k}.jpg", k)          # MMHal keeps each image under its URL's file name
    asked = []

    def rater(messages):
        asked.append(messages)
        return "The answer is fine. Rating: 4" if len(asked) % 2 else "no rating here"

    judge = Judge(rater, "scripted-rater", {"temperature": 0.0})
    out = tmp_path / "run"
    result = run_benchmark(LAB_BASE, "mmhal_bench", FIXTURES / "mmhal_template.json", image_root=root, out=out,
                           judge=judge, max_new_tokens=5)
    items = official.mmhal.load(FIXTURES / "mmhal_template.json")
    asked.clear()
    expected = evaluate("mmhal_bench", items, [r["response"] for r in cached(out)], judge)
    assert result["metrics"] == expected["metrics"]
    assert result["judge"] == {"id": "scripted-rater", "settings": {"temperature": 0.0}, "n_judged": 4,
                               "n_parse_failures": 2}
    with pytest.raises(MMAlignError, match="mmhal_bench is judged"):
        run_benchmark(LAB_BASE, "mmhal_bench", FIXTURES / "mmhal_template.json", image_root=root, out=out)


@contextlib.contextmanager
def served(model: str):
    """``mmalign serve`` for ``model`` on a free loopback port, in a thread."""
    server = start_server(ServeConfig(model=model, port=0, max_tokens=16))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_judged_benchmark_through_mmalign_serve_over_http(tmp_path):
    tsv = tmp_path / "MMAlignBench.tsv"
    rows = [("1", "what is in the image ?", "writing", "a red circle ."),
            ("2_rev", "describe the image .", "reasoning", "a blue square .")]
    tsv.write_text("index\tquestion\timage\ttype\tclaude3_sonnet\n"
                   + "".join(f"{i}\t{q}\t{b64_png(k)}\t{t}\t{a}\n" for k, (i, q, t, a) in enumerate(rows)))
    out = tmp_path / "run"
    with served(LAB_BASE) as server:
        cfg = JudgeConfig(base_url=server.url, model="base", name="lab-judge", max_tokens=8, max_retries=0)
        result = run_benchmark(LAB_BASE, "mm_alignbench", tsv, out=out, judge=cfg, max_new_tokens=5)
        # the same judge again answers from the cache the run left in out/judge_cache
        again = client_judge(dataclasses.replace(cfg, cache_dir=str(out / "judge_cache")))
        items = BENCHMARKS["mm_alignbench"].load(tsv)
        expected = evaluate("mm_alignbench", items, [r["response"] for r in cached(out)], again)
    assert result["metrics"] == expected["metrics"]
    judge = result["judge"]
    assert judge["id"] == "lab-judge" and judge["settings"]["endpoint"] == server.url + "/chat/completions"
    assert judge["settings"]["temperature"] == 0.0 and judge["settings"]["max_tokens"] == 8
    # the lab model cannot write "[[B>A]]": every verdict fails to parse, is counted and scores a tie
    assert judge["n_judged"] == 2 and judge["n_parse_failures"] == 2 and result["metrics"]["tie"] == 2
    assert len(list((out / "judge_cache").rglob("*.json"))) >= 2


def test_the_report_escapes_model_text(coco, tmp_path, monkeypatch):
    monkeypatch.setattr(produce, "generate", lambda model, processor, examples, **kw:
                        ["<script>alert(1)</script> | no"] * len(examples))
    run_benchmark(LAB_BASE, "pope", POPE, image_root=coco, out=tmp_path, max_new_tokens=4)
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_bench_command(coco, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["bench", "--model", LAB_BASE, "--benchmark", "pope", "--data", str(POPE), "--images", str(coco),
                 "--out", str(out), "max_new_tokens=4", "--judge.name", "unused"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["results"] == str(out / "results.json")
    assert json.loads((out / "results.json").read_text())["generation"]["max_new_tokens"] == 4
    assert main(["bench", "--model", LAB_BASE, "--benchmark", "popee", "--data", str(POPE)]) == 2
    assert "unknown benchmark 'popee'; did you mean 'pope'?" in capsys.readouterr().err
    assert main(["bench", "--model", LAB_BASE, "--benchmark", "llava_wild", "--data",
                 str(FIXTURES / "llava_wild.jsonl"), "--out", str(tmp_path / "j")]) == 2
    assert "item 0: field 'image': missing" in capsys.readouterr().err
