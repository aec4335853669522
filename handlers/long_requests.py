"""The JSON of long jobs: the 202 that answers a submitted job, ``{"status": id}`` answers, refusals, and the
progress callback a job runs with (it records progress for pollers and raises
:class:`~convlens.results.Cancelled` once the job is asked to stop)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from torch import Tensor

from convlens.results import Cancelled, Progress
from convlens.schema import SchemaError
from handlers import background, jobs

RECORD_INTERVAL_S = 0.5  # how often a job's progress is written for pollers


def new_job_id(endpoint: str) -> str:
    return f"{endpoint[:20]}-{uuid.uuid4().hex[:16]}"


def accepted(live: background.LiveJob, endpoint: str) -> dict[str, Any]:
    """The immediate answer (HTTP 202) to a request that runs as a job."""
    return {"job": live.job, "state": "queued", "endpoint": endpoint,
            "poll": {"status": live.job}, "cancel": {"cancel": live.job}}


def refusal(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for a job that could not be started."""
    if isinstance(exc, SchemaError):
        return 400, {"error": exc.message, "field": exc.field}, {}
    if isinstance(exc, background.RunnerFull):
        return 503, {"error": str(exc), "field": None}, {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, background.JobConflict):
        return 409, {"error": str(exc), "field": "job"}, {}
    status = int(getattr(exc, "status", 500))
    return status, {"error": str(getattr(exc, "message", exc)), "field": getattr(exc, "field", None)}, {}


def status_body(record: dict[str, Any]) -> dict[str, Any]:
    """``{"job", "state", "step", "total", "endpoint", "elapsed_s"}`` and, once the job ended, ``"status"`` (the
    HTTP status its answer would have had) and ``"result"`` (that answer's JSON)."""
    body = {"job": record.get("job"), "state": record.get("state"), "endpoint": record.get("endpoint"),
            "step": int(record.get("step") or 0), "total": int(record.get("total") or 0),
            "elapsed_s": round(float(record.get("updated", 0)) - float(record.get("started", 0)), 3)}
    result = record.get("result")
    if record.get("state") not in jobs.LIVE_STATES and isinstance(result, dict):
        body.update(status=int(result.get("status", 500)), result=result.get("body"))
    return body


def reporter(live: background.LiveJob) -> Progress:
    """The progress callback of a job: records how far it got, raises Cancelled once it is asked to stop."""
    last = [0.0]

    def progress(step: int, total: int, preview: Tensor | None = None) -> None:
        live.step, live.total = int(step), int(total)
        now = time.monotonic()
        if now - last[0] >= RECORD_INTERVAL_S or step == total:
            last[0] = now
            jobs.update(live.job, step=live.step, total=live.total)
        if live.cancelled():
            raise Cancelled(live.job)

    return progress


def long_request(technique: str, raw: dict[str, Any]) -> bool:
    """Whether a request can outlive the response timeout: its params say so (``runs_long()``, see
    :mod:`convlens.techniques.corpus.work`), checked first (SchemaError if bad: refused before any job starts)."""
    from convlens import pipeline, registry

    params = pipeline.parse_params(registry.get(technique).params, raw)
    check = getattr(params, "check", None)
    if check is not None:
        check()
    runs_long = getattr(params, "runs_long", None)
    return bool(runs_long is not None and runs_long())
