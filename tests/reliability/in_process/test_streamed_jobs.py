"""Synthesis jobs on a continuous-batching worker (issue 26, §3), driven the way TorchServe drives it: every call
carries the new requests and every open one; a streamed answer comes in chunks, a held one when its job ends."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from ts.context import RequestProcessor
from ts.protocol.otf_message_handler import create_predict_response

from convlens import pipeline
from convlens.models import load_model
from convlens.results import Cancelled
from handlers import jobs
from tests.handlers.conftest import json_row, make_context, png_bytes


@pytest.fixture(autouse=True)
def jobs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path / "jobs"


class FrontEnd:
    """What TorchServe's continuous batching does with one worker: keeps the open requests and sends them again
    (a streamed one without its body once it got a chunk), sends new ones, passes chunks on."""

    def __init__(self, endpoint: str) -> None:
        from handlers.synthesis import SynthesisHandler

        self.handler = SynthesisHandler()
        context = make_context(endpoint, batch_size=8)
        context.model_yaml_config["continuousBatching"] = True
        self.handler.initialize(context)
        self.open: dict[str, Any] = {}  # request id → the row sent next time
        self.received: dict[str, list[tuple[int, bytes]]] = {}
        self.finished: set[str] = set()

    def turn(self, **new: Any) -> set[str]:
        """One call with the open requests and ``new`` (request id → row); the ids answered in this call."""
        self.open.update(new)
        ids = list(self.open)
        context = self.handler.context
        context.request_ids = dict(enumerate(ids))
        context.request_processor = [RequestProcessor({}) for _ in ids]
        out = self.handler.handle([self.open[r] for r in ids], context)
        create_predict_response(out, context.request_ids, "Prediction success", 200, context)  # as ts/service.py
        answered = set()
        for i, rid in enumerate(ids):
            if i not in context.request_ids:
                continue  # no answer yet: stays open with its body
            answered.add(rid)
            next_chunk = context.get_response_headers(i).get("ts_stream_next")
            # TorchServe's RestJob sends a "last chunk" without headers when no first chunk came before it
            assert next_chunk != "false" or rid in self.received, f"{rid}: a last chunk with no first one"
            status = context.get_response_status(i)[0] or 200
            self.received.setdefault(rid, []).append((status, out[i]))
            if context.get_response_headers(i).get("ts_stream_next") == "true":
                self.open[rid] = {}  # cached in the backend: sent again without a body
            else:
                del self.open[rid]
                self.finished.add(rid)
        return answered

    def run_until(self, rid: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while rid not in self.finished:
            assert time.monotonic() < deadline, f"{rid} did not finish"
            self.turn()

    def lines(self, rid: str) -> list[dict[str, Any]]:
        data = b"".join(chunk for _, chunk in self.received.get(rid, []))
        return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def test_a_cancel_sent_to_the_busy_endpoint_is_answered_at_once_and_stops_the_stream() -> None:
    front = FrontEnd("neuron")
    front.turn(a=json_row(job="busy-1", stream=True, params={"steps": 2000, "size": 64}))
    deadline = time.monotonic() + 30
    while not any(m.get("event") == "progress" for m in front.lines("a")):
        assert time.monotonic() < deadline
        front.turn()
    started = time.monotonic()
    answered = front.turn(c=json_row(cancel="busy-1"))
    assert "c" in answered and time.monotonic() - started < 1.0
    [(status, body)] = front.received["c"]
    assert status == 200 and json.loads(body) == {"cancelled": True, "job": "busy-1"}
    front.run_until("a")
    result = front.lines("a")[-1]
    assert result["event"] == "result" and result["scalars"]["cancelled"] == 1.0 and result["scalars"]["steps"] < 2000


def test_a_stream_whose_client_left_stops_its_job_and_frees_the_worker() -> None:
    front = FrontEnd("neuron")
    front.turn(a=json_row(job="gone-1", stream=True, params={"steps": 2000, "size": 64}))
    deadline = time.monotonic() + 30
    while not front.received.get("a"):
        assert time.monotonic() < deadline
        front.turn()
    del front.open["a"]  # TorchServe drops a request whose connection closed
    front.turn(b=json_row(job="next-1", stream=True, params={"steps": 3, "size": 32}))
    front.run_until("b", timeout=30)
    assert front.lines("b")[-1]["event"] == "result"
    record = jobs.read("gone-1")
    assert record is not None and record["state"] == "cancelled"


def test_a_request_without_stream_is_held_until_its_job_ends_then_answered_as_json() -> None:
    front = FrontEnd("classviz")
    answered = front.turn(a=json_row(target=2, params={"steps": 6}))
    assert "a" not in answered  # no bytes until the job ends: its status is still free
    front.run_until("a")
    [(status, body)] = front.received["a"]
    data = json.loads(body)
    assert status == 200 and "event" not in data and data["scalars"]["steps"] == 6


def test_an_error_inside_a_streamed_job_keeps_its_status_when_nothing_was_sent() -> None:
    front = FrontEnd("texture")
    row = json_row(png_bytes(), stream=True, params={"method": "efros_leung", "window": 25, "size": 8,
                                                     "source_size": 8})
    front.turn(a=row)
    front.run_until("a")
    [(status, body)] = front.received["a"]
    assert status == 400 and json.loads(body)["field"] == "params.window"


def test_a_cancelled_efros_leung_texture_says_so_in_its_scalars() -> None:
    loaded = load_model("builtin", weights="pretrained")
    seen: list[int] = []

    def stop_after_two(step: int, total: int, preview: Any) -> None:
        seen.append(step)
        if len(seen) >= 2:
            raise Cancelled("t")

    image = Image.open(io.BytesIO(png_bytes())).convert("RGB")
    [out] = pipeline.run(loaded, "efros_leung", [{"image": image}], [None], None,
                         {"size": 24, "window": 5, "source_size": 32}, progress=stop_after_two)
    assert out.scalars["cancelled"] == 1.0 and out.scalars["steps"] == seen[-1] < 24 * 24
    [done] = pipeline.run(loaded, "efros_leung", [{"image": image}], [None], None,
                          {"size": 8, "window": 5, "source_size": 32})
    assert done.scalars["cancelled"] == 0.0


def test_a_stream_dropped_when_it_was_the_only_open_request_stops_without_another_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import streams

    monkeypatch.setattr(streams, "ORPHAN_S", 0.5)
    front = FrontEnd("neuron")
    front.turn(a=json_row(job="alone-1", stream=True, params={"steps": 2000, "size": 64}))
    deadline = time.monotonic() + 30
    while not front.received.get("a"):
        assert time.monotonic() < deadline
        front.turn()
    # the client left: TorchServe drops the request and, with nothing open, calls the handler no more
    deadline = time.monotonic() + 20
    while (jobs.read("alone-1") or {}).get("state") != "cancelled":
        assert time.monotonic() < deadline, jobs.read("alone-1")
        time.sleep(0.1)
