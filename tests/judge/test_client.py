"""The judge client against a real scripted HTTP server: retries and their waits, what is not retried, the
response cache, and an API key that never leaves the Authorization header."""
import json
import logging
import random
import socket

import numpy as np
import pytest
from PIL import Image

from mmalign.config import load_config, to_yaml
from mmalign.errors import ConfigError, MMAlignError
from mmalign.judge import JudgeClient, JudgeConfig, request_hash

from .conftest import completion

SECRET = "sk-test-0123456789abcdef"


def client(server, **settings) -> JudgeClient:
    return JudgeClient(JudgeConfig(base_url=server.url, model="scripted", backoff_s=0.01, **settings))


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def test_retries_429_and_500_waiting_retry_after_then_seeded_backoff(scripted):
    server = scripted([{"status": 429, "headers": {"Retry-After": "0.05"}, "body": {"error": {"message": "slow down"}}},
                       {"status": 500, "body": b"upstream crashed"},
                       {"body": completion("Rating: 7")}])
    judgement = client(server, jitter=0.5, jitter_seed=3).ask("rate it")
    assert judgement.text == "Rating: 7" and not judgement.cached and len(server.requests) == 3
    first, second = judgement.retries
    assert first == {"reason": "HTTP 429: slow down", "wait_s": 0.05}
    # retry k waits backoff * 2**k * (1 + jitter * u_k), u_k drawn from (jitter_seed, request hash)
    draws = random.Random(f"3:{judgement.request_hash}")
    expected = [0.01 * 2 ** k * (1 + 0.5 * draws.random()) for k in range(2)][1]
    assert second == {"reason": "HTTP 500: upstream crashed", "wait_s": pytest.approx(expected)}
    assert 0.02 <= second["wait_s"] <= 0.03
    times = [r["time"] for r in server.requests]
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= second["wait_s"]


def test_other_4xx_fails_at_once_with_the_servers_message(scripted):
    server = scripted([{"status": 400, "body": {"error": {"message": "messages[0]: unsupported block"}}}])
    with pytest.raises(MMAlignError, match=r"HTTP 400: messages\[0\]: unsupported block"):
        client(server, max_retries=5).ask("hi")
    assert len(server.requests) == 1


def test_redirect_is_not_followed(scripted):
    server = scripted([{"status": 307, "headers": {"Location": "/elsewhere"}, "body": b""}])
    with pytest.raises(MMAlignError, match="HTTP 307"):
        client(server).ask("hi")
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"]


def test_gives_up_after_max_retries_naming_the_last_failure(scripted):
    server = scripted([{"status": 503, "body": {"error": {"message": "overloaded"}}}] * 3)
    with pytest.raises(MMAlignError, match="gave up after 3 attempts; last: HTTP 503: overloaded"):
        client(server, max_retries=2).ask("hi")
    assert len(server.requests) == 3


def test_timeouts_and_malformed_bodies_are_retried(scripted):
    server = scripted([{"delay": 0.4}, {"body": b"<html>proxy error</html>"}, {"body": completion("yes")}])
    judgement = client(server, timeout_s=0.1).ask("hi")
    assert judgement.text == "yes" and len(server.requests) == 3
    reasons = [r["reason"] for r in judgement.retries]
    assert "timed out" in reasons[0] and "not a chat completion" in reasons[1], reasons


def test_unreachable_endpoint_is_retried_then_reported():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", backoff_s=0.001, max_retries=1)
    with pytest.raises(MMAlignError, match="gave up after 2 attempts; last: unreachable .*Connection"):
        JudgeClient(cfg).ask("hi")


def test_second_identical_request_is_served_from_the_cache(scripted, tmp_path):
    server = scripted([{"body": completion("A")}, {"body": completion("B")}, {"body": completion("C")}])
    first = client(server, cache_dir=str(tmp_path)).ask("which?", [image(0)])
    again = client(server, cache_dir=str(tmp_path)).ask("which?", [image(0)])  # a new client: a rerun
    assert (first.text, first.cached, again.text, again.cached) == ("A", False, "A", True)
    assert len(server.requests) == 1 and again.retries == [] and again.judge == first.judge
    other = image(0)
    other.putpixel((0, 0), (0, 0, 0) if other.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert client(server, cache_dir=str(tmp_path)).ask("which?", [other]).text == "B"  # image bytes are in the key
    assert client(server, cache_dir=str(tmp_path), temperature=0.7).ask("which?", [image(0)]).text == "C"
    assert len(server.requests) == 3


def test_request_carries_images_as_png_data_urls_and_the_settings(scripted):
    server = scripted([])
    judgement = client(server, name="judge-1", temperature=0.2, max_tokens=9, seed=5).ask("look", [image(1)])
    body = server.requests[0]["body"]
    assert {k: body[k] for k in ("model", "temperature", "max_tokens", "seed")} == \
        {"model": "scripted", "temperature": 0.2, "max_tokens": 9, "seed": 5}
    image_block, text_block = body["messages"][0]["content"]
    assert image_block["image_url"]["url"].startswith("data:image/png;base64,") and text_block["text"] == "look"
    assert judgement.judge == {"id": "judge-1", "model": "scripted", "endpoint": server.url + "/chat/completions",
                               "temperature": 0.2, "max_tokens": 9, "seed": 5}


def test_api_key_is_sent_but_never_cached_logged_returned_or_echoed(scripted, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MMALIGN_TEST_JUDGE_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    server = scripted([{"status": 429, "body": {"error": {"message": "limit for key {auth}"}}},
                       {"body": completion("yes")},
                       {"status": 401, "body": {"error": {"message": "Incorrect API key provided: {auth}"}}}])
    cfg = load_config(JudgeConfig, overrides=[f"base_url={server.url}", "model=scripted", "backoff_s=0.001",
                                              "api_key_env=MMALIGN_TEST_JUDGE_KEY", f"cache_dir={tmp_path}"])
    judge = JudgeClient(cfg)
    judgement = judge.ask("is it safe?", [image(2)])
    with pytest.raises(MMAlignError) as error:
        judge.ask("another question")
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "Incorrect API key provided: Bearer ***" in str(error.value)
    cache_files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert cache_files
    places = [json.dumps(judgement.to_dict()), caplog.text, str(error.value), repr(judge), to_yaml(cfg),
              *(p.read_text() for p in cache_files)]
    assert "limit for key Bearer ***" in caplog.text  # the retry was logged, with the echoed key blanked
    assert not [p for p in places if SECRET in p]


def test_key_settings_are_checked_without_echoing_a_pasted_key(monkeypatch):
    with pytest.raises(ConfigError, match="name of an environment variable") as error:
        load_config(JudgeConfig, overrides=[f"api_key_env={SECRET}"])
    assert SECRET not in str(error.value)
    monkeypatch.delenv("MMALIGN_TEST_UNSET_KEY", raising=False)
    with pytest.raises(MMAlignError, match="MMALIGN_TEST_UNSET_KEY is not set"):
        JudgeClient(JudgeConfig(model="m", api_key_env="MMALIGN_TEST_UNSET_KEY"))
    with pytest.raises(ConfigError, match="model is empty"):
        JudgeClient(JudgeConfig())


def test_chat_many_keeps_order_across_workers(scripted):
    server = scripted([])
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    judge = client(server, workers=3)
    judgements = judge.chat_many(conversations)
    assert [j.request_hash for j in judgements] == [request_hash(judge.request_body(c)) for c in conversations]
    assert sorted(r["body"]["messages"][0]["content"] for r in server.requests) == [f"q{i}" for i in range(6)]
