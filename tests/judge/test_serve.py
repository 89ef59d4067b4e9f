"""``mmalign serve`` over real HTTP: the judge client against the lab model end to end, bad requests answered with
4xx and a message, loopback by default, an optional key, and a model folder built from a config."""
import json
import urllib.error
import urllib.request

import pytest

from mmalign.config import load_config
from mmalign.errors import ConfigError, MMAlignError
from mmalign.eval.lab import generate
from mmalign.judge import (
    JudgeAskConfig,
    JudgeClient,
    JudgeConfig,
    ParseTally,
    ask_judge,
    parse_yes_no,
    user_message,
)
from mmalign.models.load import ModelConfig, load_model
from mmalign.serve import ServeConfig, serve_main, start_server
from mmalign.world.model import LabModelConfig, build_lab_model
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

from .conftest import LAB_BASE, running

WORLD = WorldConfig()


def lab_examples(task: str, n: int) -> list[dict]:
    if task == "exist":
        return [make_example(WORLD, task, "test", i, pope_split="adversarial", label=("yes", "no")[i % 2])
                for i in range(n)]
    return [make_example(WORLD, task, "test", i) for i in range(n)]


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """``(status, parsed JSON body)`` of one raw request, errors included."""
    request = urllib.request.Request(server.url.removesuffix("/v1") + path, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_judge_client_gets_the_models_own_greedy_answers(lab_server, lab_endpoint):
    """Served answers equal local batched greedy generation (``eval.lab.generate``) on the same images."""
    examples = lab_examples("exist", 6) + lab_examples("count", 2)
    judge = JudgeClient(JudgeConfig(base_url=lab_server.url, model="base", max_tokens=4, name="lab-base",
                                    workers=2))
    judgements = judge.chat_many([[user_message(e["prompt"], e["images"])] for e in examples])
    local = generate(lab_endpoint.model, lab_endpoint.processor, examples, desc="local")
    assert [j.text for j in judgements] == local
    assert all(j.finish_reason == "stop" and j.judge["id"] == "lab-base" for j in judgements)
    usage = judgements[0].usage
    assert usage["prompt_tokens"] > 16 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    tally = ParseTally()
    for j in judgements[:6]:
        tally.parse(parse_yes_no, j.text)
    assert (tally.ok, tally.failed) == (6, 0)


def test_captions_and_the_models_list(lab_server, lab_endpoint):
    example = lab_examples("caption", 1)[0]
    judge = JudgeClient(JudgeConfig(base_url=lab_server.url, model="base", max_tokens=40))
    assert judge.ask(example["prompt"], example["images"]).text == \
        generate(lab_endpoint.model, lab_endpoint.processor, [example])[0]
    status, models = call(lab_server, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["base"]


def test_ask_command_parses_the_reply(lab_server, tmp_path):
    example = lab_examples("exist", 1)[0]
    example["images"][0].save(tmp_path / "scene.png")
    out = ask_judge(load_config(JudgeAskConfig, overrides=[
        f"judge.base_url={lab_server.url}", "judge.model=base", "judge.max_tokens=4", f"prompt={example['prompt']}",
        f"images=[{tmp_path / 'scene.png'}]", "parse=yes_no"]))
    assert out["parsed"] in (True, False) and out["parse"]["failed"] == 0 and out["judge"]["model"] == "base"


IMAGE_BLOCK = {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"model": "base"}', 400, "missing field 'messages'"),
    (b'{"messages": []}', 400, "'messages' must be a non-empty list"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "messages[0].role"),
    (json.dumps({"messages": [{"role": "user", "content": [IMAGE_BLOCK]}]}).encode(), 400,
     "messages[0].content[0].image_url.url: not a decodable image"),
    (json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]}]}).encode(), 400,
     "only data: URLs"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000}).encode(), 400,
     "max_tokens must be an integer in 1..256"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}).encode(), 400, "temperature"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-9"}).encode(), 404,
     "model 'gpt-9' is not served here"),
])
def test_bad_requests_get_a_status_and_a_message(lab_server, body, status, message):
    got, payload = call(lab_server, "POST", "/v1/chat/completions", body)
    assert got == status and message in payload["error"]["message"], payload


def test_server_keeps_serving_after_bad_requests_and_the_client_does_not_retry_them(lab_server):
    call(lab_server, "POST", "/v1/chat/completions", b"{not json")
    assert call(lab_server, "POST", "/v1/nowhere", b"{}")[0] == 404
    judge = JudgeClient(JudgeConfig(base_url=lab_server.url, model="base", max_tokens=4, backoff_s=5.0))
    bad = [{"role": "user", "content": [IMAGE_BLOCK, {"type": "text", "text": "is there a circle ?"}]}]
    with pytest.raises(MMAlignError, match="HTTP 400: .*not a decodable image"):
        judge.chat(bad)  # a retry would wait 5 s; the 400 fails at once
    assert judge.ask("is there a circle in the image ?").text


def test_binds_loopback_by_default_and_other_hosts_must_be_asked_for(lab_endpoint, capsys):
    assert ServeConfig().host == "127.0.0.1"
    with running(start_server(ServeConfig(port=0), lab_endpoint)) as server:
        assert server.server_address[0] == "127.0.0.1"
    with pytest.raises(ConfigError, match="allow_remote=true"):
        load_config(ServeConfig, overrides=["host=0.0.0.0"])
    load_config(ServeConfig, overrides=["host=0.0.0.0", "allow_remote=true"])
    assert serve_main(["--model", LAB_BASE, "--host", "192.168.1.5"]) == 2
    assert "allow_remote" in capsys.readouterr().err


def test_server_key_is_required_when_configured(lab_endpoint, monkeypatch):
    monkeypatch.setenv("MMALIGN_TEST_SERVE_KEY", "serve-secret")
    with running(start_server(ServeConfig(port=0, api_key_env="MMALIGN_TEST_SERVE_KEY"), lab_endpoint)) as server:
        without = JudgeClient(JudgeConfig(base_url=server.url, model="base", max_tokens=4))
        with pytest.raises(MMAlignError, match="HTTP 401: missing or wrong API key"):
            without.ask("is there a circle in the image ?")
        assert call(server, "GET", "/v1/models")[0] == 401
        judge = JudgeClient(JudgeConfig(base_url=server.url, model="base", max_tokens=4,
                                        api_key_env="MMALIGN_TEST_SERVE_KEY"))
        assert judge.ask("is there a circle in the image ?").text


def test_serves_a_model_folder_built_from_a_config_with_seeded_sampling(tmp_path):
    small = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64, text_hidden=32,
                           text_layers=1, text_heads=2, text_mlp=64)
    model, processor = build_lab_model(small, image_size=64)
    folder = tmp_path / "tiny-lab"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    count, caption = lab_examples("count", 1)[0], lab_examples("caption", 1)[0]
    with running(start_server(ServeConfig(model=str(folder), port=0, max_tokens=12))) as server:
        def ask(example, max_tokens, **settings):
            cfg = JudgeConfig(base_url=server.url, model="tiny-lab", max_tokens=max_tokens, **settings)
            return JudgeClient(cfg).ask(example["prompt"], example["images"]).text
        greedy = ask(count, 4)
        sampled = [ask(caption, 12, temperature=1.5, seed=s) for s in (1, 1, 2)]
    assert greedy == generate(*load_model(ModelConfig(path=str(folder))), [count])[0]
    assert sampled[0] == sampled[1] != sampled[2]
