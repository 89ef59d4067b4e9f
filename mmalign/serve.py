"""``mmalign serve``: an OpenAI-compatible chat endpoint backed by a local model folder.

``GET /v1/models`` lists the one model; ``POST /v1/chat/completions`` takes OpenAI chat messages whose images are
``image_url`` blocks holding base64 data URLs (the server never fetches a remote URL) and answers with greedy
decoding at temperature 0, else sampling (``temperature``, ``top_p``, ``seed``). The model runs one request at a
time. It binds 127.0.0.1 unless a host is given *and* ``allow_remote`` is set; with ``api_key_env`` it also
requires ``Authorization: Bearer <that variable's value>``. A bad request gets a 4xx with an OpenAI-style
``{"error": {"message", "type"}}`` body saying what is wrong; the server keeps running.
"""
from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from mmalign.config import load_config
from mmalign.errors import ConfigError, MMAlignError
from mmalign.judge.messages import decode_data_url
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model

log = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant")


@dataclass
class ServeConfig:
    model: str = ""                  # a model folder (or hub id)
    name: str = ""                   # the model id clients ask for; the folder's name when empty
    host: str = "127.0.0.1"
    port: int = 8000                 # 0 picks a free port
    allow_remote: bool = False       # must be true to bind a host other than loopback
    api_key_env: str = ""            # if set, clients must send this environment variable's value as a bearer key
    dtype: str = "float32"
    device: str = "auto"             # auto: cuda when available, else cpu
    max_tokens: int = 256            # a request's default and largest max_tokens
    max_body_mb: float = 32.0

    def validate(self) -> None:
        if not is_loopback(self.host) and not self.allow_remote:
            raise ConfigError(f"host {self.host!r} is not loopback: serving beyond this machine must be asked for "
                              "with allow_remote=true (and consider api_key_env)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_tokens <= 0 or self.max_body_mb <= 0:
            raise ConfigError("max_tokens and max_body_mb must be positive")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # any other name may resolve anywhere
        return False


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ModelEndpoint:
    """The model side of the server: request dicts in, OpenAI response dicts out, one generation at a time."""

    def __init__(self, model, processor, model_id: str, max_tokens: int = 256):
        self.model, self.processor, self.model_id, self.max_tokens = model.eval(), processor, model_id, max_tokens
        self.device = next(model.parameters()).device
        self.lock = threading.Lock()
        self.created = int(time.time())

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "mmalign"}]}

    def complete(self, request) -> dict:
        """The chat completion for a parsed request body; ``BadRequest`` naming the field when it is invalid."""
        settings = self._settings(request)
        example = to_example(request.get("messages"))
        sampling = ({"do_sample": True, "temperature": settings["temperature"], "top_p": settings["top_p"]}
                    if settings["temperature"] > 0 else {"do_sample": False})
        tok = self.processor.tokenizer
        # the processor too stays under the lock: a fast tokenizer used from two threads at once can fail
        with self.lock, torch.no_grad():
            try:
                inputs = build_inputs(self.processor, [example], for_generation=True).to(self.device)
            except (MMAlignError, ValueError) as e:
                raise BadRequest(f"cannot build model inputs from these messages: {e}") from None
            if settings["seed"] is not None:
                torch.manual_seed(settings["seed"])
            out = self.model.generate(**inputs, max_new_tokens=settings["max_tokens"], pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id, **sampling)
            new = out[0, inputs["input_ids"].shape[1]:].tolist()
            finish = "length"
            if tok.eos_token_id in new:
                new, finish = new[: new.index(tok.eos_token_id) + 1], "stop"
            text = tok.decode(new, skip_special_tokens=True).strip()
        prompt_tokens = int(inputs["attention_mask"].sum())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_id,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(new),
                      "total_tokens": prompt_tokens + len(new)},
        }

    def _settings(self, request) -> dict:
        if not isinstance(request, dict):
            raise BadRequest("the request body must be a JSON object")
        if "messages" not in request:
            raise BadRequest("missing field 'messages'")
        model = request.get("model")
        if model is not None and model != self.model_id:
            raise BadRequest(f"model {model!r} is not served here; this server serves {self.model_id!r}", 404)
        if request.get("stream"):
            raise BadRequest("stream=true is not supported")
        if _given(request, "n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        max_tokens = _given(request, "max_tokens", _given(request, "max_completion_tokens", self.max_tokens))
        temperature, top_p = _given(request, "temperature", 0.0), _given(request, "top_p", 1.0)
        seed = request.get("seed")
        _check(_is_int(max_tokens) and 1 <= max_tokens <= self.max_tokens,
               f"max_tokens must be an integer in 1..{self.max_tokens}, got {max_tokens!r}")
        _check(_is_number(temperature) and temperature >= 0, f"temperature must be >= 0, got {temperature!r}")
        _check(_is_number(top_p) and 0 < top_p <= 1, f"top_p must be in (0, 1], got {top_p!r}")
        _check(seed is None or _is_int(seed), f"seed must be an integer, got {seed!r}")
        return {"max_tokens": max_tokens, "temperature": float(temperature), "top_p": float(top_p), "seed": seed}


def to_example(messages) -> dict:
    """OpenAI messages -> an mmalign example (``images`` + a message-list ``prompt`` with ``{"type": "image"}``
    blocks where the images were), checking every field on the way."""
    _check(isinstance(messages, list) and messages, "'messages' must be a non-empty list")
    images, prompt = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        _check(isinstance(message, dict), f"{where} must be an object")
        role, content = message.get("role"), message.get("content")
        _check(role in ROLES, f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if isinstance(content, str):
            prompt.append({"role": role, "content": [{"type": "text", "text": content}]})
            continue
        _check(isinstance(content, list), f"{where}.content must be a string or a list of blocks")
        blocks = []
        for j, block in enumerate(content):
            blocks.append(_block(block, f"{where}.content[{j}]", images))
        prompt.append({"role": role, "content": blocks})
    return {"images": images, "prompt": prompt}


def _block(block, where: str, images: list) -> dict:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        _check(isinstance(block.get("text"), str), f"{where}.text must be a string")
        return {"type": "text", "text": block["text"]}
    _check(kind == "image_url", f"{where}.type must be 'text' or 'image_url', got {kind!r}")
    ref = block.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    _check(isinstance(url, str), f"{where}.image_url.url must be a string")
    _check(url.startswith("data:"), f"{where}.image_url.url: only data: URLs are accepted "
                                    "(this server never fetches remote images)")
    try:
        images.append(decode_data_url(url))
    except ValueError as e:
        raise BadRequest(f"{where}.image_url.url: {e}") from None
    return {"type": "image"}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BadRequest(message)


def _given(request: dict, key: str, default):
    """The request's value for ``key``; ``default`` when it is missing or null (as OpenAI reads null)."""
    value = request.get(key)
    return default if value is None else value


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: ModelEndpoint, host: str, port: int, api_key: str = "", max_body: int = 32 << 20):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.endpoint, self.api_key, self.max_body = endpoint, api_key, max_body
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self._authorised():
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, self.server.endpoint.models())
            else:
                self._error(404, f"no such path: GET {self.path}")

    def do_POST(self):
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no such path: POST {self.path}")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._error(411, "a Content-Length header is required")
        if int(length) > self.server.max_body:
            return self._error(413, f"the body is {length} bytes; the limit is {self.server.max_body}")
        try:
            request = json.loads(self.rfile.read(int(length)))
        except ValueError as e:
            return self._error(400, f"the request body is not valid JSON ({e})")
        try:
            self._send(200, self.server.endpoint.complete(request))
        except BadRequest as e:
            self._error(e.status, str(e))
        except Exception as e:  # a model failure answers this request with 500 and leaves the server up
            log.exception("generation failed")
            self._error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")

    def _authorised(self) -> bool:
        key = self.server.api_key
        given = self.headers.get("Authorization", "")
        if key and not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            self._error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')", "authentication_error")
            return False
        return True

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:  # the body may be unread, so the connection cannot carry another request
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # request lines to logging, not stderr; headers are never logged
        log.info("%s %s", self.address_string(), format % args)


def load_endpoint(cfg: ServeConfig) -> ModelEndpoint:
    model, processor = load_model(ModelConfig(path=cfg.model, dtype=cfg.dtype))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    return ModelEndpoint(model.to(device), processor, cfg.name or Path(cfg.model).name, cfg.max_tokens)


def start_server(cfg: ServeConfig, endpoint: ModelEndpoint | None = None) -> ChatServer:
    """A bound, not yet running server for ``cfg`` (``serve_forever`` runs it); ``endpoint`` defaults to
    loading ``cfg.model``."""
    cfg.validate()
    api_key = ""
    if cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env, "")
        if not api_key:
            raise MMAlignError(f"the server's API key variable {cfg.api_key_env} is not set (or empty)")
    endpoint = endpoint or load_endpoint(cfg)
    try:
        return ChatServer(endpoint, cfg.host, cfg.port, api_key, int(cfg.max_body_mb * (1 << 20)))
    except OSError as e:
        raise MMAlignError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None


def serve(cfg: ServeConfig) -> None:
    """Serve until interrupted."""
    server = start_server(cfg)
    print(f"serving {server.endpoint.model_id!r} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve_main(argv: list[str]) -> int:
    """``mmalign serve [--model DIR] [--host H] [--port P] [--config FILE] [key=value ...]``; the exit code."""
    p = argparse.ArgumentParser(prog="mmalign serve", description="OpenAI-compatible endpoint for a local model.")
    p.add_argument("--model", help="the model folder to serve")
    p.add_argument("--host", help="address to bind (127.0.0.1 by default; others need allow_remote=true)")
    p.add_argument("--port", type=int)
    p.add_argument("--config", "-c", help="YAML file of settings")
    p.add_argument("overrides", nargs="*", help="key=value settings that beat the file")
    args = p.parse_args(argv)
    flags = [f"{k}={v}" for k, v in (("model", args.model), ("host", args.host), ("port", args.port)) if v is not None]
    try:
        serve(load_config(ServeConfig, args.config, [*args.overrides, *flags]))
    except MMAlignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
