"""A long job's progress streams through the gate as it happens: the first progress line arrives while the
job still runs (a buffering proxy would hold every line until the end), so a client can cancel it."""

from __future__ import annotations

import threading

from client.http import ConvLensClient, Progress
from tests.reliability.conftest import Stack


def test_progress_reaches_the_client_through_the_gate_while_the_job_runs(stack: Stack) -> None:
    api = ConvLensClient(stack.url, token=stack.token, timeout=300)
    first = threading.Event()

    def on_progress(progress: Progress) -> None:
        if not first.is_set():
            first.set()
            api.cancel("gate-stream-1")  # possible only because the line came before the end

    result = api.synthesis("neuron", params={"steps": 2000, "size": 96}, job="gate-stream-1",
                           on_progress=on_progress)
    assert first.is_set()
    assert result.scalars["cancelled"] == 1.0 and result.scalars["steps"] < 2000
