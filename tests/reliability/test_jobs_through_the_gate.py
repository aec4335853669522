"""Long jobs on the real server, through the gate (issue 26, §3 and §5): a cancel sent to the endpoint that is busy
with the job is answered at once, a stream whose client leaves stops its job and frees the endpoint, and a
dataset request far beyond the response timeout is a job answered at once that cancels without debris."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from client.http import ConvLensClient, Progress
from convlens.corpus import datasets as store
from tests.reliability.conftest import Stack, record


def wait_state(stack: Stack, job: str, states: tuple[str, ...], timeout: float = 20.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    body: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        body = stack.post("classify", json={"status": job}, timeout=10).json()
        if body.get("state") in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job} not in {states} after {timeout} s: {body}")


def test_a_cancel_sent_to_the_busy_endpoint_is_answered_at_once(stack: Stack) -> None:
    api = ConvLensClient(stack.url, token=stack.token, timeout=120)
    first = threading.Event()
    answer: dict = {}  # type: ignore[type-arg]

    def on_progress(progress: Progress) -> None:
        first.set()

    def run() -> None:
        answer["result"] = api.synthesis("neuron", params={"steps": 2000, "size": 96}, job="busy-endpoint-1",
                                         on_progress=on_progress)

    runner = threading.Thread(target=run)
    runner.start()
    assert first.wait(60), "no progress line"
    started = time.monotonic()
    r = stack.post("neuron", json={"cancel": "busy-endpoint-1"}, timeout=30)  # the endpoint running the job
    cancel_s = time.monotonic() - started
    runner.join(30)
    assert r.status_code == 200 and r.json() == {"cancelled": True, "job": "busy-endpoint-1"}
    assert cancel_s < 2.0, f"cancel took {cancel_s:.2f} s"
    assert answer["result"].scalars["cancelled"] == 1.0 and answer["result"].scalars["steps"] < 2000
    again = stack.post("neuron", json={"cancel": "busy-endpoint-1"}, timeout=30)
    assert again.status_code == 404 and again.json()["field"] == "cancel"
    record("cancel_on_busy_endpoint", {"cancel_seconds": round(cancel_s, 3)})


def test_a_stream_closed_by_its_client_stops_its_job_and_frees_the_endpoint(stack: Stack) -> None:
    body = {"job": "left-1", "stream": True, "params": {"steps": 2000, "size": 96}}
    with stack.post("neuron", json=body, stream=True, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers.get("Content-Type", "").startswith("application/x-ndjson")
        line = next(iter(r.iter_lines()))
        assert json.loads(line)["event"] == "progress"
    closed = time.monotonic()
    ended = wait_state(stack, "left-1", ("cancelled", "done", "failed"), timeout=20)
    stop_s = time.monotonic() - closed
    assert ended["state"] == "cancelled" and ended["step"] < 2000
    started = time.monotonic()
    quick = stack.post("neuron", json={"params": {"steps": 3, "size": 32}}, timeout=60)
    next_s = time.monotonic() - started
    assert quick.status_code == 200 and quick.json()["scalars"]["steps"] == 3
    assert next_s < 15, f"the next request waited {next_s:.1f} s"
    record("closed_stream", {"job_stopped_after_s": round(stop_s, 2), "next_request_s": round(next_s, 2)})


def test_a_million_image_dataset_is_a_job_answered_at_once_that_cancels_without_debris(stack: Stack) -> None:
    data = Path(store.data_dir())
    before = {p.name for p in data.iterdir()}
    started = time.monotonic()
    r = stack.post("dataset", json={"params": {"action": "builtin", "name": "million-x", "n": 1_000_000}},
                   timeout=30)
    answered_s = time.monotonic() - started
    assert r.status_code == 202 and answered_s < 5, (r.status_code, r.text[:200])
    job = r.json()["job"]
    deadline = time.monotonic() + 60
    while wait_state(stack, job, ("running",))["step"] < 100:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancel = stack.post("dataset", json={"cancel": job}, timeout=30)  # the busy endpoint itself
    assert cancel.status_code == 200
    ended = wait_state(stack, job, ("cancelled", "done", "failed"), timeout=30)
    assert ended["state"] == "cancelled" and ended["status"] == 409
    left = {p.name for p in data.iterdir()} - before
    assert left == set(), f"left behind: {left}"
    record("million_image_job", {"answered_s": round(answered_s, 3), "images_before_cancel": ended["step"]})
