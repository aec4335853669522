"""Quick requests under long jobs: classify's latency with 0 and 4 synthesis jobs running.

    .venv/bin/python bench/contention.py --seconds 30 --out docs/reliability.md
    .venv/bin/python bench/contention.py --seconds 5                      # smoke run, prints only

For each setting of the long-job endpoints (normal priority and all torch threads, as before
handlers/priority.py; nice 10 and one thread, the default; SCHED_IDLE and one thread) a real TorchServe with
classify and four synthesis endpoints is started, then one client sends classify requests back to back for
``--seconds`` with no job running and again while classviz, neuron, deepdream and texture each run a long job
(restarted if one ends, cancelled at the end). p50 and p99 of classify's round trip are reported; the goal is
loaded p99 <= 3x idle p99.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import machine_info, markdown_table, replace_section  # noqa: E402

HEADING = "## Quick requests under long jobs (bench/contention.py)"
GOAL = 3.0
LONG_JOBS: dict[str, dict[str, Any]] = {  # endpoint -> a request that runs for minutes
    "classviz": {"target": 0, "params": {"steps": 2000, "size": 224}},
    "neuron": {"params": {"steps": 2000, "size": 224}},
    "deepdream": {"image": "IMAGE", "params": {"steps": 2000, "octaves": 1, "size": 256}},
    "texture": {"image": "IMAGE", "params": {"steps": 2000, "size": 256}},
}
SETTINGS = {  # $CONVLENS_LONG_JOB_PRIORITY and $CONVLENS_LONG_JOB_THREADS of the server (handlers/priority.py)
    "normal, all threads": {"CONVLENS_LONG_JOB_PRIORITY": "normal", "CONVLENS_LONG_JOB_THREADS": "0"},
    "low (nice 10), 1 thread (default)": {"CONVLENS_LONG_JOB_PRIORITY": "", "CONVLENS_LONG_JOB_THREADS": ""},
    "idle (SCHED_IDLE), 1 thread": {"CONVLENS_LONG_JOB_PRIORITY": "idle", "CONVLENS_LONG_JOB_THREADS": "1"},
}
DEFAULT = "low (nice 10), 1 thread (default)"


def sample_image() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(ROOT / "dashboard" / "samples" / "ring.png").convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def classify_latencies(url: str, headers: dict[str, str], image: str, seconds: float) -> list[float]:
    """Back-to-back classify requests for ``seconds``; each round trip in ms."""
    session, times = requests.Session(), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        r = session.post(f"{url}/predictions/classify", json={"image": image}, headers=headers, timeout=120)
        times.append((time.perf_counter() - started) * 1e3)
        r.raise_for_status()
    return times


def run_long_jobs(url: str, headers: dict[str, str], image: str, stop: threading.Event) -> list[threading.Thread]:
    """One thread per long-job endpoint, re-sending its job until ``stop`` is set."""
    def loop(endpoint: str, body: dict[str, Any]) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            job = {**body, "job": f"bench-{endpoint}-{n}"}
            if job.get("image") == "IMAGE":
                job["image"] = image
            try:
                r = requests.post(f"{url}/predictions/{endpoint}", json=job, headers=headers, timeout=900)
            except requests.RequestException:
                time.sleep(1)
                continue
            if 400 <= r.status_code < 500:  # a bad job request would measure nothing
                print(f"error: {endpoint} refused its long job: {r.status_code} {r.text[:300]}", flush=True)
                return

    threads = [threading.Thread(target=loop, args=item, daemon=True) for item in LONG_JOBS.items()]
    for thread in threads:
        thread.start()
    return threads


def cancel_all(url: str, headers: dict[str, str]) -> None:
    for endpoint in LONG_JOBS:
        for n in range(1, 20):
            requests.post(f"{url}/predictions/classify", json={"cancel": f"bench-{endpoint}-{n}"}, headers=headers,
                          timeout=30)


def measure(setting: dict[str, str], seconds: float, image: str) -> dict[str, list[float]]:
    from serve import server

    with tempfile.TemporaryDirectory(prefix="convlens-contention-") as tmp:
        try:  # stopped in `finally` even when killed while it starts
            info = server.start(Path(tmp), server.Ports.free(), endpoints=("classify", *LONG_JOBS), env=setting,
                                timeout=600)
            url, headers = info.inference_url, {"Authorization": f"Bearer {info.token}"}
            classify_latencies(url, headers, image, 3)  # warm
            idle = classify_latencies(url, headers, image, seconds)
            stop = threading.Event()
            threads = run_long_jobs(url, headers, image, stop)
            time.sleep(5)  # every job past its start
            loaded = classify_latencies(url, headers, image, seconds)
            stop.set()
            cancel_all(url, headers)
            for thread in threads:
                thread.join(30)
            return {"idle": idle, "loaded": loaded}
        finally:
            server.stop(Path(tmp))


def report(results: dict[str, dict[str, list[float]]], seconds: float, machine: dict[str, str]) -> str:
    rows = []
    for name, runs in results.items():
        for condition, times in runs.items():
            jobs = "0" if condition == "idle" else str(len(LONG_JOBS))
            rows.append([name, jobs, str(len(times)), f"{statistics.median(times):.0f}",
                         f"{percentile(times, 0.99):.0f}"])
    lines = [f"Measured {dt.date.today().isoformat()} with `.venv/bin/python bench/contention.py --seconds "
             f"{seconds:g} --out docs/reliability.md`: classify (the built-in model, one client back to back) for "
             f"{seconds:g} s with no job, then {seconds:g} s while {', '.join(LONG_JOBS)} each run a long job.",
             "", markdown_table(["long-job priority", "jobs running", "requests", "p50 ms", "p99 ms"], rows), "",
             "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()) + "."]
    on = results.get(DEFAULT)
    if on:
        ratio = percentile(on["loaded"], 0.99) / percentile(on["idle"], 0.99)
        lines += ["", f"Default ({DEFAULT}): loaded p99 / idle p99 = {ratio:.1f} (goal <= {GOAL:g})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measurement")
    parser.add_argument("--out", help="markdown file to write the section into (e.g. docs/reliability.md)")
    parser.add_argument("--only", choices=tuple(SETTINGS), help="measure one setting only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers (finally) when killed
    machine = machine_info()
    image = sample_image()
    results = {}
    for name, setting in SETTINGS.items():
        if args.only and name != args.only:
            continue
        print(f"{name}: starting TorchServe ...", flush=True)
        results[name] = measure(setting, args.seconds, image)
    text = report(results, args.seconds, machine)
    print(text)
    if args.out:
        replace_section(Path(args.out), HEADING, text, title="# Reliability")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
