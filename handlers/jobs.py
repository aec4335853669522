"""Cancelling a long job across worker processes: a cancel request (answered by any ConvLens endpoint, so it
is not queued behind the job it cancels) leaves a flag file that the job's worker checks at every step.

The flag directory is ``$CONVLENS_JOBS_DIR``, else ``<tmp>/convlens-jobs-<uid>``: every worker of one server
(one host, one container) sees it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

FLAG_TTL_S = 3600  # flags older than this are swept (a cancel for a job that never came)


def jobs_dir() -> Path:
    path = Path(os.environ.get("CONVLENS_JOBS_DIR") or Path(tempfile.gettempdir()) / f"convlens-jobs-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def flag(job: str) -> Path:
    return jobs_dir() / f"{job}.cancel"


def request_cancel(job: str) -> None:
    flag(job).touch()
    sweep()


def is_cancelled(job: str) -> bool:
    return flag(job).exists()


def clear(job: str) -> None:
    flag(job).unlink(missing_ok=True)


def sweep(now: float | None = None) -> None:
    now = time.time() if now is None else now
    for path in jobs_dir().glob("*.cancel"):
        try:
            if now - path.stat().st_mtime > FLAG_TTL_S:
                path.unlink(missing_ok=True)
        except OSError:
            continue
