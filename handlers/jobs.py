"""Long jobs across the worker processes of one server: who runs which job, how far it got, its result, and
cancel flags that apply only to a running job.

Every worker of one server (one host, one container) shares the directory ``$CONVLENS_JOBS_DIR``, else
``<tmp>/convlens-jobs-<uid>``. A job ``<id>`` has a record ``<id>.job.json`` (endpoint, owning pid, state,
progress, and the result once finished) and, while someone asked to stop it, a flag ``<id>.cancel`` that its
worker checks at every step. A cancel for an id that is not running leaves nothing behind, and a job that
starts clears any stale flag of its id, so a cancel can never stop a later job that reuses the id.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

FLAG_TTL_S = 3600  # stale flags (a job that died between the cancel and its next step) are swept after this
RECORD_TTL_S = 3600  # a finished job's record (and result) is kept this long for its client to fetch
LIVE_STATES = ("queued", "running")
DIED = "the worker running this job stopped (restarted or killed) before it finished"


def jobs_dir() -> Path:
    path = Path(os.environ.get("CONVLENS_JOBS_DIR") or Path(tempfile.gettempdir()) / f"convlens-jobs-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def flag(job: str) -> Path:
    return jobs_dir() / f"{job}.cancel"


def record_path(job: str) -> Path:
    return jobs_dir() / f"{job}.job.json"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this host / in this container's pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _write(job: str, record: dict[str, Any]) -> None:
    record = {**record, "updated": time.time()}
    path = record_path(job)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)  # readers never see half a record


def read(job: str) -> dict[str, Any] | None:
    """The job's record, or None if unknown (or swept). A live record whose worker is gone reads as failed."""
    try:
        record = dict(json.loads(record_path(job).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if record.get("state") in LIVE_STATES and not pid_alive(int(record.get("pid", 0))):
        record.update(state="failed", result={"status": 500, "body": {"error": DIED, "field": None}})
    return record


def is_live(job: str) -> bool:
    record = read(job)
    return record is not None and record.get("state") in LIVE_STATES


def start(job: str, endpoint: str, state: str = "queued") -> None:
    """Register job ``job`` as owned by this process; a stale cancel flag of its id is dropped."""
    flag(job).unlink(missing_ok=True)
    _write(job, {"job": job, "endpoint": endpoint, "pid": os.getpid(), "state": state, "step": 0, "total": 0,
                 "started": time.time(), "result": None})


def update(job: str, **fields: Any) -> None:
    record = read(job)
    if record is not None and record.get("state") in LIVE_STATES:
        _write(job, {**record, **fields})


def finish(job: str, state: str, status: int, body: dict[str, Any]) -> None:
    """The job ended (``done``, ``cancelled`` or ``failed``) with this answer; its flag goes with it."""
    record = read(job) or {"job": job, "pid": os.getpid(), "started": time.time()}
    _write(job, {**record, "state": state, "result": {"status": status, "body": body}})
    clear(job)
    sweep()


def request_cancel(job: str) -> bool:
    """Flag job ``job`` to stop at its next step; False (and no flag) if no such job is running."""
    if not is_live(job):
        return False
    flag(job).touch()
    if not is_live(job):  # it ended meanwhile: take the flag back
        clear(job)
        return False
    return True


def is_cancelled(job: str) -> bool:
    return flag(job).exists()


def clear(job: str) -> None:
    flag(job).unlink(missing_ok=True)


def sweep(now: float | None = None) -> None:
    """Drop stale flags and the records of jobs finished (or dead) more than their TTL ago."""
    now = time.time() if now is None else now
    for path in jobs_dir().glob("*.cancel"):
        try:
            if now - path.stat().st_mtime > FLAG_TTL_S:
                path.unlink(missing_ok=True)
        except OSError:
            continue
    for path in jobs_dir().glob("*.job.json"):
        record = read(path.name[: -len(".job.json")])
        if record is not None and record.get("state") not in LIVE_STATES \
                and now - float(record.get("updated", 0)) > RECORD_TTL_S:
            path.unlink(missing_ok=True)
