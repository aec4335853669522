"""Long requests as jobs (issue 26, §3 and §5), in process: answered at once with a job id, polled with
``{"status": id}``, cancelled with ``{"cancel": id}`` from any endpoint, no debris left behind; cancel flags
apply only to a running job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from convlens.corpus import datasets as store
from handlers import jobs
from tests.handlers.conftest import call, json_row, make_context


@pytest.fixture(autouse=True)
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


def corpus_handler(endpoint: str = "dataset") -> Any:
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context(endpoint, batch_size=1, handler_config={"warm_umap": False}))
    return handler


def status_of(handler: Any, job: str) -> dict[str, Any]:
    [(status, body)] = call(handler, [json_row(status=job)])
    assert status == 200, body
    return body


def wait_for(handler: Any, job: str, states: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status_of(handler, job)
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job} not in {states} within {timeout} s: {body}")


def test_a_million_image_dataset_is_a_job_answered_at_once_that_cancels_without_debris(dirs: Path) -> None:
    h = corpus_handler()
    started = time.monotonic()
    [(status, body)] = call(h, [json_row(params={"action": "builtin", "name": "x", "n": 1_000_000})])
    assert status == 202 and time.monotonic() - started < 5.0, body
    job = body["job"]
    assert body["state"] == "queued" and body["poll"] == {"status": job}
    running = wait_for(h, job, ("running",))
    deadline = time.monotonic() + 30
    while status_of(h, job)["step"] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(p.name.startswith(".tmp-") for p in dirs.iterdir()), "the job writes into a temporary folder"
    assert running["total"] in (0, 1_000_000)
    [(status, body)] = call(corpus_handler("faithfulness"), [json_row(cancel=job)])  # another endpoint
    assert status == 200 and body == {"cancelled": True, "job": job}
    ended = wait_for(h, job, ("cancelled", "failed", "done"), timeout=30)
    assert ended["state"] == "cancelled" and ended["status"] == 409 and ended["result"]["field"] == "cancel"
    assert ended["step"] < 1_000_000
    assert sorted(p.name for p in dirs.iterdir() if not p.name.startswith(".cache")) == []
    assert not jobs.is_cancelled(job)


def test_a_small_request_stays_synchronous_and_background_makes_it_a_job() -> None:
    h = corpus_handler()
    [(status, body)] = call(h, [json_row(params={"action": "builtin", "name": "small", "n": 12})])
    assert status == 200 and [r["name"] for r in body["items"]] == ["small"]
    [(status, body)] = call(h, [json_row(params={"action": "builtin", "name": "later", "n": 12}, background=True,
                                         job="make-later")])
    assert status == 202 and body["job"] == "make-later"
    done = wait_for(h, "make-later", ("done", "failed"))
    assert done["state"] == "done" and done["status"] == 200 and done["step"] == done["total"] == 12
    assert sorted(r["name"] for r in done["result"]["items"]) == ["later", "small"]


def test_faithfulness_over_many_images_is_a_job() -> None:
    h = corpus_handler("faithfulness")
    [(status, body)] = call(h, [json_row(params={"n": 50, "steps": 2, "randomisation_images": 1},
                                         job="faith-50")])
    assert status == 202 and body["job"] == "faith-50"
    running = wait_for(h, "faith-50", ("running", "done"))
    assert running["total"] in (0, 101)
    [(status, _)] = call(h, [json_row(cancel="faith-50")])  # the endpoint running it answers at once
    assert status == 200
    assert wait_for(h, "faith-50", ("cancelled", "done"))["state"] == "cancelled"


def test_a_bad_job_request_is_refused_at_once_naming_the_field() -> None:
    h = corpus_handler()
    [(status, body)] = call(h, [json_row(params={"action": "builtin", "name": "x", "n": "many"})])
    assert status == 400 and body["field"] == "params.n"
    [(status, body)] = call(h, [json_row(params={"method": "embedding", "dataset": "nowhere"})])
    assert status == 400 and body["field"] == "params.dataset"


@pytest.mark.parametrize("job", ["never-started", "finished-one"])
def test_cancelling_an_id_that_is_not_running_is_a_404_and_stops_no_later_job(job: str) -> None:
    h = corpus_handler()
    if job == "finished-one":
        call(h, [json_row(params={"action": "builtin", "name": "f", "n": 3}, background=True, job=job)])
        wait_for(h, job, ("done",))
    [(status, body)] = call(h, [json_row(cancel=job)])
    assert status == 404 and body["field"] == "cancel"
    assert not jobs.is_cancelled(job)
    [(status, body)] = call(h, [json_row(params={"action": "builtin", "name": "g", "n": 3}, background=True,
                                         job=job)])
    assert status == 202
    assert wait_for(h, job, ("done", "cancelled", "failed"))["state"] == "done"


def test_a_stale_flag_of_an_earlier_run_does_not_stop_a_new_job() -> None:
    jobs.flag("reused").touch()  # e.g. a cancel that raced the end of an earlier job with this id
    h = corpus_handler()
    call(h, [json_row(params={"action": "builtin", "name": "r", "n": 3}, background=True, job="reused")])
    assert wait_for(h, "reused", ("done", "cancelled", "failed"))["state"] == "done"


def test_status_of_an_unknown_job_is_a_404_naming_status() -> None:
    [(status, body)] = call(corpus_handler(), [json_row(status="nobody")])
    assert status == 404 and body["field"] == "status"


def test_a_job_whose_worker_died_reads_as_failed_and_cannot_be_cancelled() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    jobs.start("orphan", "dataset", state="running")
    record = jobs.read("orphan")
    assert record is not None
    jobs._write("orphan", {**record, "pid": int(dead.stdout)})
    body = status_of(corpus_handler(), "orphan")
    assert body["state"] == "failed" and body["status"] == 500 and "stopped" in body["result"]["error"]
    assert jobs.request_cancel("orphan") is False and not jobs.is_cancelled("orphan")


def test_start_up_sweeps_unfinished_folders_of_dead_workers_only(dirs: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dirs.mkdir(parents=True, exist_ok=True)
    orphan = dirs / f".tmp-{int(dead.stdout)}-abc123"
    live = dirs / f".tmp-{os.getppid()}-def456"  # a concurrently running worker's job
    trash = dirs / f".trash-{int(dead.stdout)}-ghi789"
    for folder in (orphan, live, trash):
        (folder / "circle").mkdir(parents=True)
        (folder / "circle" / "0000001.png").write_bytes(b"png")
    corpus_handler()
    assert not orphan.exists() and not trash.exists() and live.exists()


def test_a_dataset_written_by_a_job_is_named_after_its_process(dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = store._render_chunk

    def spy(folder: str, *args: Any) -> int:
        seen.append(Path(folder).name)
        return real(folder, *args)

    monkeypatch.setattr(store, "_render_chunk", spy)
    store.builtin("named", 2)
    assert seen and all(name.startswith(f".tmp-{os.getpid()}-") for name in seen)
