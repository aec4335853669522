"""The typed client and the CLI with long jobs: a 202 is waited for transparently, progress is reported, a
finished job's error is raised, cancel says whether anything was running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import client.http as http_client
from client import cli
from client.http import ApiError, ConvLensClient, JobStatus
from tests.scripted_http import Scripted, serving


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(http_client, "JOB_POLL_S", 0.01)
    with serving() as url:
        yield url


def running(step: int) -> tuple[int, dict[str, Any]]:
    return 200, {"job": "j1", "state": "running", "step": step, "total": 10, "endpoint": "dataset"}


def test_a_request_the_server_makes_a_job_is_waited_for_with_progress(server: str) -> None:
    done = {"items": [{"name": "x"}], "scalars": {"datasets": 1.0}, "images": {}, "series": {}, "technique": "datasets",
            "weights": "builtin", "elapsed_ms": 1.0}
    Scripted.script = [(202, {"job": "j1", "state": "queued"}), running(3), running(7),
                       (200, {"job": "j1", "state": "done", "step": 10, "total": 10, "status": 200, "result": done})]
    seen: list[JobStatus] = []
    response = ConvLensClient(server, token="t", timeout=5).dataset(
        "datasets", params={"action": "builtin", "name": "x", "n": 1_000_000}, on_job=seen.append)
    assert response.items == [{"name": "x"}]
    assert [s.step for s in seen] == [3, 7, 10] and seen[-1].finished
    assert [path for path, _ in Scripted.seen[1:]] == ["/predictions/classify"] * 3
    assert all(body == {"status": "j1"} for _, body in Scripted.seen[1:])


def test_a_job_that_ended_in_an_error_raises_it(server: str) -> None:
    Scripted.script = [(202, {"job": "j1", "state": "queued"}),
                       (200, {"job": "j1", "state": "cancelled", "step": 1, "total": 10, "status": 409,
                              "result": {"error": "stopped", "field": "cancel"}})]
    with pytest.raises(ApiError) as caught:
        ConvLensClient(server, token="t", timeout=5).corpus("faithfulness", params={"n": 50})
    assert caught.value.status == 409 and caught.value.field == "cancel"


def test_submit_sends_background_and_cancel_reports_whether_a_job_ran(server: str) -> None:
    api = ConvLensClient(server, token="t", timeout=5)
    Scripted.script = [(202, {"job": "j9", "state": "queued"}), (200, {"cancelled": True, "job": "j9"}),
                       (404, {"error": "no running job", "field": "cancel"})]
    assert api.submit("dataset", {"params": {"n": 5}}) == "j9"
    assert Scripted.seen[0][1]["background"] is True
    assert api.cancel("j9") is True
    assert api.cancel("j9") is False


def test_the_cli_submits_waits_and_cancels(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    Scripted.script = [running(4), (200, {"job": "j1", "state": "done", "step": 10, "total": 10, "status": 200,
                                          "result": {"ok": 1}})]
    assert cli.main(["job", "wait", "j1", "--json", "--url", server]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": 1}
    Scripted.seen, Scripted.script = [], [(404, {"error": "no running job", "field": "cancel"})]
    assert cli.main(["job", "cancel", "j1", "--url", server]) == 3
    assert json.loads(capsys.readouterr().out) == {"job": "j1", "cancelled": False}
