"""CPU priority of long jobs, so quick requests are not starved on a small machine.

Endpoints whose model-config says ``handler: {long_jobs: true}`` (synthesis, corpus, dataset) run their worker at
a lower scheduling priority and with fewer torch threads (``handler.torch_threads``, else
``$CONVLENS_LONG_JOB_THREADS``, default 1, 0 = torch's default); the quick endpoints (classify, attribution,
activations, stylize) keep full priority and all threads. ``$CONVLENS_LONG_JOB_PRIORITY`` says how low:

    low     (default) nice 10: under contention about a tenth of the CPU share of a quick worker
    idle    Linux SCHED_IDLE: a long job runs only on CPU nothing else wants, and a quick request that wakes up
            takes the CPU at once (with nice alone a job keeps its time slice, and each barrier of a quick
            request's torch threads can wait for it). A job then gets only what everything else in its
            scheduling group (the server's autogroup, a container's cgroup) leaves: steady quick traffic can
            stall it completely (docs/reliability.md)
    normal  unchanged

A thread that does long work for a quick endpoint (a background job started by a request) lowers only itself:

    from handlers import priority
    threading.Thread(target=lambda: (priority.lower_current_thread(), work())).start()

On Linux the policy and nice value belong to each thread; threads started afterwards inherit them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRIORITY_ENV = "CONVLENS_LONG_JOB_PRIORITY"
THREADS_ENV = "CONVLENS_LONG_JOB_THREADS"
PRIORITIES = ("low", "idle", "normal")
DEFAULT_PRIORITY = "low"
LOW_NICE = 10
DEFAULT_THREADS = 1


def long_job_priority() -> str:
    """``$CONVLENS_LONG_JOB_PRIORITY``: low (default), idle or normal."""
    raw = os.environ.get(PRIORITY_ENV, "").strip().lower() or DEFAULT_PRIORITY
    if raw not in PRIORITIES:
        logger.warning("$%s=%r is not one of %s; using %s", PRIORITY_ENV, raw, ", ".join(PRIORITIES),
                       DEFAULT_PRIORITY)
        return DEFAULT_PRIORITY
    return raw


def describe(thread_id: int = 0) -> str:
    """A thread's priority as :data:`PRIORITIES` name it ("idle", or "nice N")."""
    if hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(thread_id) == os.SCHED_IDLE:
        return "idle"
    return f"nice {os.getpriority(os.PRIO_PROCESS, thread_id)}"


def _lower(thread_id: int, priority: str) -> None:
    """Lower one thread (never raise it: an unprivileged process could not take that back)."""
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
    elif priority in ("idle", "low") and os.getpriority(os.PRIO_PROCESS, thread_id) < LOW_NICE:
        os.setpriority(os.PRIO_PROCESS, thread_id, LOW_NICE)


def lower_current_thread(priority: str | None = None) -> str:
    """Lower the calling thread (and the threads it starts later) to long-job priority; what it now has."""
    thread_id = threading.get_native_id()
    try:
        _lower(thread_id, priority or long_job_priority())
    except OSError as exc:
        logger.warning("could not lower the priority of thread %d: %s", thread_id, exc)
    return describe(thread_id)


def lower_process(priority: str | None = None) -> str:
    """Lower every thread of this process (torch's pools included) to long-job priority; what it now has."""
    priority = priority or long_job_priority()
    tasks = Path("/proc/self/task")
    ids = [int(p.name) for p in tasks.iterdir()] if tasks.is_dir() else [threading.get_native_id()]
    for thread_id in ids:
        try:
            _lower(thread_id, priority)
        except OSError as exc:  # a thread that ended meanwhile
            logger.debug("could not lower the priority of thread %d: %s", thread_id, exc)
    return describe(threading.get_native_id())


def torch_threads(config: Mapping[str, Any]) -> int | None:
    """The torch thread count an endpoint asks for: ``torch_threads`` in its handler config; for a long-job
    endpoint else ``$CONVLENS_LONG_JOB_THREADS`` (default 1, 0 = torch's default); otherwise None."""
    given = config.get("torch_threads")
    if given:
        return int(given)
    if not config.get("long_jobs"):
        return None
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        return max(0, int(raw)) or None
    except ValueError:
        logger.warning("$%s=%r is not a whole number; using %d", THREADS_ENV, raw, DEFAULT_THREADS)
        return DEFAULT_THREADS


def apply(config: Mapping[str, Any]) -> tuple[str, int | None]:
    """At worker start: cap torch's threads and, for a long-job endpoint, lower the worker's priority.
    Returns (the priority it now has, torch threads or None when left to torch)."""
    threads = torch_threads(config)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return (lower_process() if config.get("long_jobs") else describe()), threads
