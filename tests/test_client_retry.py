"""The client retries once when a worker died or the server is busy (503, 507, TorchServe's 500 "Worker died.")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import client.http as http_client
from client.http import ApiError, ConvLensClient
from tests.scripted_http import Scripted, serving


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(http_client, "RETRY_DELAY_S", 0.01)
    with serving() as url:
        yield url


def run(url: str, script: list[tuple[int, dict[str, Any]]]) -> tuple[Any, int]:
    Scripted.script, Scripted.seen = script, []
    try:
        return ConvLensClient(url, token="t").post("classify", {"info": "classes"}), len(Scripted.seen)
    except ApiError as exc:
        return exc, len(Scripted.seen)


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
