"""The client retries once when a worker died or the server is busy (503, 507, TorchServe's 500 "Worker died.")."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import client.http as http_client
from client.http import ApiError, ConvLensClient


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of ``script``."""

    script: list[tuple[int, dict[str, Any]]] = []
    seen = 0

    def do_POST(self) -> None:  # noqa: N802 — http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = Scripted.script[min(Scripted.seen, len(Scripted.script) - 1)]
        Scripted.seen += 1
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(http_client, "RETRY_DELAY_S", 0.01)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(url: str, script: list[tuple[int, dict[str, Any]]]) -> tuple[Any, int]:
    Scripted.script, Scripted.seen = script, 0
    try:
        return ConvLensClient(url, token="t").post("classify", {"info": "classes"}), Scripted.seen
    except ApiError as exc:
        return exc, Scripted.seen


OK = (200, {"classes": ["a"]})
DIED_507 = (507, {"error": "the worker serving this request died and is restarting", "field": None})
DIED_500 = (500, {"code": 500, "type": "InternalServerException", "message": "Worker died."})
BUSY = (503, {"error": "busy", "field": None})


@pytest.mark.parametrize("first", [DIED_507, DIED_500, BUSY], ids=["507", "500 worker died", "503"])
def test_one_retry_recovers(server: str, first: tuple[int, dict[str, Any]]) -> None:
    answer, calls = run(server, [first, OK])
    assert answer == {"classes": ["a"]} and calls == 2


def test_twice_is_a_clear_error(server: str) -> None:
    answer, calls = run(server, [DIED_507, DIED_507, OK])
    assert isinstance(answer, ApiError) and calls == 2
    assert answer.status == 507 and "twice" in answer.message and "try again" in answer.message


def test_other_errors_are_not_retried(server: str) -> None:
    answer, calls = run(server, [(500, {"error": "internal error; see the server log", "field": None}), OK])
    assert isinstance(answer, ApiError) and answer.status == 500 and calls == 1
    answer, calls = run(server, [(400, {"error": "bad", "field": "image"}), OK])
    assert isinstance(answer, ApiError) and answer.field == "image" and calls == 1
