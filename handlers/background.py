"""Long requests run off the worker's request loop: a per-worker job runner with bounded concurrency.

A job is submitted from the request loop and answered at once (a job id, or — for a streamed or held request
on a continuous-batching endpoint — by later iterations of the loop); the runner's threads do the work while
the loop stays free to answer status requests and cancels. A job stops at its next step when its cancel
event is set (a cancel answered by this worker, a client that went away), when a cancel flag for its id
appears (a cancel answered by another worker, see :mod:`handlers.jobs`), or when it outlives its time limit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handlers import jobs, priority

logger = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)
DEFAULT_MAX_SECONDS = 3600.0


class RunnerFull(Exception):
    """No room for another job on this worker (the client retries after ``retry_after`` seconds)."""

    retry_after = 10


class JobConflict(Exception):
    """A job with this id is already running."""


@dataclass
class LiveJob:
    """A job of this worker: its cancel event, progress, queued stream lines, and its answer once done."""

    job: str
    stream: bool = False
    request_id: str | None = None  # the TorchServe request that streams (or waits for) the answer
    deadline: float = float("inf")
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    lines: deque[bytes] = field(default_factory=deque)
    step: int = 0
    total: int = 0
    answer: Answer | None = None
    reason: str = ""  # why it was stopped: "cancelled", "disconnected", "time limit"

    def stop(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()

    def cancelled(self) -> bool:
        """Checked by the job at every step."""
        if not self.cancel.is_set():
            if jobs.is_cancelled(self.job):
                self.stop("cancelled")
            elif time.monotonic() > self.deadline:
                self.stop("time limit")
        return self.cancel.is_set()


Work = Callable[[LiveJob], Answer]


class JobRunner:
    """``max_running`` jobs at a time on this worker, at most ``max_waiting`` more queued."""

    def __init__(self, endpoint: str, max_running: int = 1, max_waiting: int = 4,
                 max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.endpoint = endpoint
        self.max_running = max(1, max_running)
        self.max_waiting = max(0, max_waiting)
        self.max_seconds = max_seconds
        self.live: dict[str, LiveJob] = {}
        self._queue: queue.Queue[tuple[LiveJob, Work]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        _RUNNERS.add(self)

    def pending(self) -> list[LiveJob]:
        with self._lock:
            return [j for j in self.live.values() if not j.done.is_set()]

    def submit(self, job_id: str, work: Work, stream: bool = False, request_id: str | None = None) -> LiveJob:
        with self._lock:
            if sum(not j.done.is_set() for j in self.live.values()) >= self.max_running + self.max_waiting:
                raise RunnerFull(f"{self.endpoint} is running {self.max_running} job(s) with {self.max_waiting} "
                                 "waiting; try again later")
            if jobs.is_live(job_id):
                raise JobConflict(f"a job called {job_id!r} is already running; pick another id")
            jobs.start(job_id, self.endpoint)
            for old in [k for k, j in self.live.items() if j.done.is_set()]:
                del self.live[old]
            live = LiveJob(job_id, stream, request_id, time.monotonic() + self.max_seconds)
            self.live[job_id] = live
            while len(self._threads) < self.max_running:
                thread = threading.Thread(target=self._serve, name=f"{self.endpoint}-job-{len(self._threads)}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)
        self._queue.put((live, work))
        return live

    def find(self, job_id: str) -> LiveJob | None:
        with self._lock:
            return self.live.get(job_id)

    def by_request(self, request_id: str) -> LiveJob | None:
        with self._lock:
            return next((j for j in self.live.values() if j.request_id == request_id), None)

    def _serve(self) -> None:
        priority.lower_current_thread()  # long work: quick requests of this worker come first
        while True:
            live, work = self._queue.get()
            try:
                self._run(live, work)
            except Exception:  # noqa: BLE001 — the runner thread must survive any job
                logger.exception("%s: job %s failed", self.endpoint, live.job)
                self._finish(live, (500, {"error": "internal error; see the server log", "field": None}))

    def _run(self, live: LiveJob, work: Work) -> None:
        if live.cancelled():
            self._finish(live, stopped_answer(live))
            return
        jobs.update(live.job, state="running")
        answer = work(live)
        if live.cancelled() and answer[0] >= 400:  # stopped with nothing to show: say so, not a failure
            answer = stopped_answer(live)
        self._finish(live, answer)

    def _finish(self, live: LiveJob, answer: Answer) -> None:
        status, body = answer
        state = "cancelled" if live.cancel.is_set() else "done" if status < 400 else "failed"
        jobs.finish(live.job, state, status, body)
        live.answer = answer
        live.done.set()


_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()
EXIT_WAIT_S = 30.0


@atexit.register
def stop_all(timeout: float = EXIT_WAIT_S) -> None:
    """Stop every job of this process and wait for them (at exit: a job thread still inside torch while the
    interpreter finalises aborts the process)."""
    runners = list(_RUNNERS)
    for runner in runners:
        for live in runner.pending():
            live.stop("shutting down")
    deadline = time.monotonic() + timeout
    for runner in runners:
        for live in runner.pending():
            live.done.wait(max(0.0, deadline - time.monotonic()))


def stopped_answer(live: LiveJob) -> Answer:
    """A job stopped before it had anything to show (its partial output is removed)."""
    return 409, {"error": f"job {live.job!r} stopped ({live.reason or 'cancelled'}) at step {live.step} of "
                          f"{live.total}; its partial output was removed", "field": "cancel"}
