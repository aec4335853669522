"""The synthesis handler without Java: streamed progress lines, cancel flags across handlers, job ids, inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers import jobs
from tests.handlers.conftest import b64, call, json_row, make_context, png_bytes


@pytest.fixture(autouse=True)
def jobs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path / "jobs"


def handler(endpoint: str) -> Any:
    from handlers.synthesis import SynthesisHandler

    h = SynthesisHandler()
    h.initialize(make_context(endpoint, batch_size=1))
    return h


def test_a_streamed_request_sends_progress_lines_before_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    h = handler("classviz")
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(h, "send_progress", lambda index, message: sent.append({"index": index, **message}))
    [(status, body)] = call(h, [json_row(target=2, params={"steps": 12}, stream=True)])
    assert status == 200 and body["event"] == "result" and body["scalars"]["steps"] == 12
    assert sent and sent[-1]["step"] == 12 and sent[-1]["total"] == 12 and sent[-1]["preview"]
    assert all(m["index"] == 0 and m["event"] == "progress" for m in sent)


def test_without_stream_there_is_no_progress_and_no_event_field(monkeypatch: pytest.MonkeyPatch) -> None:
    h = handler("classviz")
    sent: list[Any] = []
    monkeypatch.setattr(h, "send_progress", lambda index, message: sent.append(message))
    [(status, body)] = call(h, [json_row(target=2, params={"steps": 3})])
    assert status == 200 and "event" not in body and not sent
    assert body["target_label"] == "triangle" and body["labels"]["target_label"] == "triangle"


def test_a_cancel_for_a_job_that_is_not_running_leaves_no_flag_for_a_later_job(jobs_dir: Path) -> None:
    [(status, body)] = call(handler("classviz"), [json_row(cancel="job-42")])  # any endpoint answers a cancel
    assert status == 404 and body["field"] == "cancel" and not (jobs_dir / "job-42.cancel").exists()
    [(status, body)] = call(handler("neuron"), [json_row(job="job-42", params={"steps": 5})])
    assert status == 200 and body["scalars"]["cancelled"] == 0.0 and body["scalars"]["steps"] == 5
    assert not jobs.is_cancelled("job-42")


@pytest.mark.parametrize(("fields", "field"), [
    ({"job": "../etc/passwd"}, "job"), ({"cancel": "a b"}, "cancel"), ({"cancel": ""}, "cancel"),
])
def test_job_ids_are_checked(fields: dict[str, Any], field: str) -> None:
    [(status, body)] = call(handler("classviz"), [json_row(target=1, params={"steps": 1}, **fields)])
    assert status == 400 and body["field"] == field


def test_style_takes_content_and_up_to_four_styles() -> None:
    h = handler("style")
    image = png_bytes()
    params = {"steps": 1, "size": 32, "network": "random_vgg"}
    row = json_row(content=b64(image), style=b64(image), style_2=b64(image), params=params)
    [(status, body)] = call(h, [row])
    assert status == 200 and {"result", "content", "style", "style_2"} <= set(body["images"])
    assert "random weights" in body["labels"]["network"]
    [(status, body)] = call(h, [json_row(content=b64(image), style=b64(image), style_5=b64(image), params=params)])
    assert status == 400 and body["field"] == "style_5"
    [(status, body)] = call(h, [json_row(style=b64(image), params=params)])
    assert status == 400 and body["field"] == "content"
    [(status, body)] = call(h, [json_row(image=image, content=b64(image), style=b64(image), params=params)])
    assert status == 400 and body["field"] == "image"
    assert json.dumps(body)  # plain JSON, no traceback
