"""Requests about a running job, answered on any endpoint: ``{"cancel": id}`` and ``{"status": id}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convlens.schema import SchemaError, job_id
from handlers import background, jobs, known_fields, long_requests
from handlers.errors import Outcome, RequestError


def cancel(fields: Mapping[str, Any], runner: background.JobRunner | None = None) -> dict[str, Any]:
    """``{"cancel": "<job>"}``: ask the running job with that id to stop at its next step (whichever worker runs
    it). An id that is not running (unknown, or finished) is a 404 naming ``cancel``, and leaves nothing behind."""
    job = job_id(fields.get("cancel"), "cancel")
    if job is None:
        raise SchemaError("cancel", "needs the id of the job to cancel")
    known_fields.refuse_unknown(fields, ("cancel",))
    live = runner.find(job) if runner is not None else None
    if live is not None and not live.done.is_set() and jobs.is_live(job):
        live.stop("cancelled")
    elif not jobs.request_cancel(job):
        raise RequestError(404, f"no running job {job!r} (unknown, or already finished): nothing to cancel",
                           "cancel")
    return {"cancelled": True, "job": job}


def job_status(fields: Mapping[str, Any]) -> Outcome:
    """``{"status": "<job>"}``: a job's state and progress and, once it ended, its answer (any endpoint)."""
    job = job_id(fields.get("status"), "status")
    if job is None:
        raise SchemaError("status", "needs the id of the job")
    known_fields.refuse_unknown(fields, ("status",))
    record = jobs.read(job)
    if record is None:
        raise RequestError(404, f"no job {job!r} (unknown, or finished more than "
                                f"{jobs.RECORD_TTL_S // 60} minutes ago)", "status")
    return Outcome(200, long_requests.status_body(record))


def answer(fields: Mapping[str, Any], runner: background.JobRunner | None) -> Outcome | None:
    """The answer of a cancel or status request, or None if ``fields`` is neither."""
    if "cancel" in fields:
        return Outcome(200, cancel(fields, runner))
    if "status" in fields:
        return job_status(fields)
    return None
