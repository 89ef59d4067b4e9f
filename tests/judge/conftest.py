"""Real HTTP servers on free loopback ports, each run in a thread: a scripted one that fails on purpose, and
``mmalign serve`` backed by the shipped lab model."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import mmalign
from mmalign.serve import ServeConfig, load_endpoint, start_server

LAB_BASE = str(Path(mmalign.__file__).parent / "assets" / "lab" / "base")



@contextlib.contextmanager
def running(server):
    """``server`` serving in a daemon thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def completion(text: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class ScriptedServer(ThreadingHTTPServer):
    """Answers the n-th POST with ``script[n]``: ``{"status", "body" (dict or bytes), "headers", "delay"}``; past
    the script's end, 200 with the completion "ok". Every request is kept as ``{"time", "headers", "body"}``, and
    ``{auth}`` in a dict body is replaced by the request's Authorization header (to echo a key back)."""
    daemon_threads = True

    def __init__(self, script: list[dict]):
        self.script, self.requests = list(script), []
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        pass  # a client that timed out leaves a broken pipe behind; that is the point of the test


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        n = len(self.server.requests)
        self.server.requests.append({"time": time.monotonic(), "path": self.path, "headers": dict(self.headers),
                                     "body": json.loads(body)})
        step = self.server.script[n] if n < len(self.server.script) else {}
        time.sleep(step.get("delay", 0))
        payload = step.get("body", completion("ok"))
        if isinstance(payload, dict):
            payload = json.dumps(payload).replace("{auth}", self.headers.get("Authorization", ""))
        data = payload if isinstance(payload, bytes) else payload.encode()
        self.send_response(step.get("status", 200))
        for key, value in step.get("headers", {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def scripted():
    """``scripted(steps)`` starts a ScriptedServer that lives until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda script: stack.enter_context(running(ScriptedServer(script)))


@pytest.fixture(scope="session")
def lab_endpoint():
    return load_endpoint(ServeConfig(model=LAB_BASE))


@pytest.fixture(scope="module")
def lab_server(lab_endpoint):
    """``mmalign serve`` with the shipped lab model, on the default host and a free port."""
    with running(start_server(ServeConfig(model=LAB_BASE, port=0), lab_endpoint)) as server:
        yield server
