"""A judge: a client for any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, SGLang, ``mmalign serve``).

Each call sends one conversation and returns a :class:`Judgement`: the reply's text with the judge's id and
settings, so every label built from it says who gave it. Transient failures (429, 5xx, a refused connection, a
timeout, a 2xx that is not a chat completion) are retried with exponential backoff and seeded jitter, waiting what
``Retry-After`` asks when the server sends it; any other status fails at once with the server's message. The API
key is read from the environment variable the config names, sent only in the ``Authorization`` header and
blanked out of any server message that echoes it; it never reaches the cache, the logs or a judgement.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from mmalign.errors import ConfigError, MMAlignError
from mmalign.judge.cache import ResponseCache, request_hash
from mmalign.judge.messages import ImageLike, user_message
from mmalign.judge.transport import Reply, Unreachable, post_json

log = logging.getLogger(__name__)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class JudgeConfig:
    """Where the judge is and how it is asked. Holds the *name* of the key's environment variable, never the key."""
    base_url: str = "http://127.0.0.1:8000/v1"  # requests go to {base_url}/chat/completions
    model: str = ""                  # the model id the endpoint serves
    name: str = ""                   # the judge id recorded with every label; the model id when empty
    api_key_env: str = ""            # environment variable holding the API key; empty sends no key
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None          # sent as the request's seed; part of the request, so of the cache key
    timeout_s: float = 60.0          # per attempt
    max_retries: int = 6             # retries after the first attempt
    backoff_s: float = 1.0           # wait before retry k (k = 0, 1, ...): backoff_s * 2**k * (1 + jitter * u)
    max_backoff_s: float = 60.0      # cap on any one wait, Retry-After included
    jitter: float = 0.5
    jitter_seed: int = 0             # u ~ U[0, 1) is drawn from (jitter_seed, request, k): reruns wait alike
    cache_dir: str = ""              # a folder for the response cache; empty turns it off
    workers: int = 1                 # concurrent requests in ``chat_many``

    def validate(self) -> None:
        if self.api_key_env and not _ENV_NAME.fullmatch(self.api_key_env):
            # the value is not echoed: someone may have pasted the key itself here
            raise ConfigError("judge api_key_env must be the name of an environment variable (letters, digits "
                              "and _), not the key itself")
        for key in ("timeout_s", "max_tokens", "workers"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"judge {key} must be positive, got {getattr(self, key)}")
        for key in ("max_retries", "backoff_s", "max_backoff_s", "jitter", "temperature"):
            if getattr(self, key) < 0:
                raise ConfigError(f"judge {key} must be >= 0, got {getattr(self, key)}")


@dataclass
class Judgement:
    """One reply. ``judge`` identifies who answered and how (id, model, endpoint, settings); ``retries`` lists the
    failed attempts before it as ``{"reason", "wait_s"}`` (empty for a cached reply, which cost no request)."""
    text: str
    judge: dict
    request_hash: str
    cached: bool
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)
    retries: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class JudgeClient:
    def __init__(self, cfg: JudgeConfig):
        cfg.validate()
        if not cfg.model:
            raise ConfigError("judge model is empty: set it to the model id the endpoint serves")
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._api_key = _read_key(cfg.api_key_env)
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self.judge = {"id": cfg.name or cfg.model, "model": cfg.model, "endpoint": _public_url(self.url),
                      "temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": cfg.seed}

    def __repr__(self) -> str:
        return f"JudgeClient({self.judge['id']!r} at {self.judge['endpoint']})"

    def ask(self, prompt: str, images: Sequence[ImageLike] = ()) -> Judgement:
        """One user turn: ``images`` (PIL images or files) then ``prompt``."""
        return self.chat([user_message(prompt, images)])

    def chat(self, messages: list[dict]) -> Judgement:
        """The judge's reply to ``messages`` (OpenAI chat messages), from the cache when this exact request
        was answered before."""
        body = self.request_body(messages)
        key = request_hash(body)
        entry = self.cache.get(key) if self.cache else None
        if entry is not None:
            return _judgement(entry["response"], self.judge, key, cached=True, retries=[])
        response, retries = self._post(body, key)
        if self.cache:
            self.cache.put(key, {"request_hash": key, "judge": self.judge, "response": response})
        return _judgement(response, self.judge, key, cached=False, retries=retries)

    def chat_many(self, conversations: Sequence[list[dict]]) -> list[Judgement]:
        """``chat`` for each conversation, ``cfg.workers`` at a time, in order; the first failure is raised."""
        with ThreadPoolExecutor(self.cfg.workers) as pool:
            return list(pool.map(self.chat, conversations))

    def request_body(self, messages: list[dict]) -> dict:
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens}
        if self.cfg.seed is not None:
            body["seed"] = self.cfg.seed
        return body

    def _post(self, body: dict, key: str) -> tuple[dict, list[dict]]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        jitter = random.Random(f"{self.cfg.jitter_seed}:{key}")
        retries: list[dict] = []
        for attempt in range(self.cfg.max_retries + 1):
            try:
                reply = post_json(self.url, data, headers, self.cfg.timeout_s)
            except Unreachable as e:
                reason, reply = f"unreachable ({e})", None
            else:
                if 200 <= reply.status < 300:
                    response = _completion(reply)
                    if response is not None:
                        return response, retries
                    reason = f"HTTP {reply.status} with a body that is not a chat completion"
                elif reply.status == 429 or reply.status >= 500:
                    reason = f"HTTP {reply.status}: {self._redact(reply.error_message())}"
                else:
                    raise MMAlignError(f"judge {self.judge['id']} at {self.judge['endpoint']}: HTTP {reply.status}: "
                                       f"{self._redact(reply.error_message())}")
            if attempt == self.cfg.max_retries:
                raise MMAlignError(f"judge {self.judge['id']} at {self.judge['endpoint']}: gave up after "
                                   f"{attempt + 1} attempts; last: {reason}")
            wait = self._wait(attempt, reply, jitter)
            log.warning("judge %s: %s; retry %d/%d in %.2f s", self.judge["id"], reason, attempt + 1,
                        self.cfg.max_retries, wait)
            retries.append({"reason": reason, "wait_s": wait})
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _wait(self, attempt: int, reply: Reply | None, jitter: random.Random) -> float:
        u = jitter.random()  # drawn every time, so the k-th wait's u does not depend on earlier Retry-Afters
        asked = reply.retry_after() if reply is not None else None
        wait = asked if asked is not None else self.cfg.backoff_s * 2 ** attempt * (1 + self.cfg.jitter * u)
        return min(wait, self.cfg.max_backoff_s)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _read_key(env: str) -> str:
    if not env:
        return ""
    key = os.environ.get(env, "").strip()
    if not key:
        raise MMAlignError(f"the judge's API key variable {env} is not set (or empty) in the environment")
    return key


def _public_url(url: str) -> str:
    """The URL without user info, query or fragment: what may be written to logs and labels."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _completion(reply: Reply) -> dict | None:
    """The chat completion in a 2xx body, or None when the body is not one (cut short, HTML from a proxy, ...)."""
    try:
        response = json.loads(reply.body)
        if isinstance(response["choices"][0]["message"]["content"], str):
            return response
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return None


def _judgement(response: dict, judge: dict, key: str, *, cached: bool, retries: list[dict]) -> Judgement:
    choice = response["choices"][0]
    return Judgement(text=choice["message"]["content"], judge=dict(judge), request_hash=key, cached=cached,
                     finish_reason=choice.get("finish_reason"), usage=response.get("usage") or {}, retries=retries)
