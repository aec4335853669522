"""At exit every running job of the process is stopped and waited for: a job thread still inside torch while the
interpreter finalises aborts the process ("terminate called without an active exception", exit status 134)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from handlers import background


def test_stop_all_stops_running_and_queued_jobs_and_waits_for_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))
    runner = background.JobRunner("neuron", max_running=1, max_waiting=1)

    def until_cancelled(live: background.LiveJob) -> background.Answer:
        while not live.cancelled():
            live.step += 1
            time.sleep(0.01)
        return 500, {"error": "stopped", "field": None}

    running = runner.submit("exit-1", until_cancelled)
    queued = runner.submit("exit-2", until_cancelled)
    time.sleep(0.2)
    assert not running.done.is_set() and running.step > 0  # it runs until told to stop
    background.stop_all(timeout=10)
    assert running.done.is_set() and queued.done.is_set()
    assert running.reason == queued.reason == "shutting down"
    assert running.answer is not None and running.answer[0] == 409 and queued.step == 0
