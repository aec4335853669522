"""Throughput against the number of TorchServe workers per endpoint, on the built-in model, through the gate.

    .venv/bin/python bench/workers.py --out docs/deployment.md          # 1, 2, 4 workers (~6 min)
    .venv/bin/python bench/workers.py --workers 1 2 --seconds 4 --rounds 1

One TorchServe per worker count (classify and saliency endpoints, the shipped model configs with
minWorkers = maxWorkers = N), each behind its own nginx gate exactly as the api container runs them, all
started before measuring. Then ROUNDS rounds; in each, every (workload, worker count) cell gets CLIENTS
concurrent clients sending requests as fast as they are answered for SECONDS, the worker counts taking
turns. The median round per cell is reported: whatever else runs on the machine hits every worker count
alike. Torch threads per worker: TorchServe's default unless --torch-threads.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from bench.timing import free_port, load_average, machine_info, markdown_table, replace_section, wait_for_quiet  # noqa: E402
from convlens.builtin.dataset import render_sample  # noqa: E402
from serve import gate, server  # noqa: E402

HEADING = "## Measured: throughput against TorchServe workers (bench/workers.py)"
ENDPOINTS = ("classify", "saliency")


def image_b64() -> str:
    buffer = io.BytesIO()
    Image.fromarray(render_sample(5, 4).image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def workloads() -> dict[str, tuple[str, dict[str, Any]]]:
    img = image_b64()
    return {
        "classify": ("classify", {"image": img, "model": "builtin"}),
        "Grad-CAM": ("saliency", {"image": img, "model": "builtin", "params": {"method": "gradcam"}}),
        "guided backprop": ("saliency", {"image": img, "model": "builtin", "params": {"method": "guided"}}),
    }


def run_load(url: str, token: str, endpoint: str, body: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        nonlocal errors
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = session.post(f"{url}/predictions/{endpoint}", json=body, headers=headers, timeout=120)
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += r.status_code != 200

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3, "p95_ms": latencies[int(len(latencies) * 0.95)] * 1e3}


def start_server(workers: int, torch_threads: int | None) -> tuple[Path, Any, gate.Gate]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"convlens-bench-w{workers}-"))
    per_endpoint: dict[str, Any] = {"minWorkers": workers, "maxWorkers": workers}
    if torch_threads:
        per_endpoint["handler"] = {"torch_threads": torch_threads, "cache_size": 3, "preload": ["builtin"]}
    info = server.start(run_dir, server.Ports.free(), endpoints=ENDPOINTS,
                        model_config={e: per_endpoint for e in ENDPOINTS}, timeout=900)
    return run_dir, info, gate.start(run_dir, ("127.0.0.1", free_port()), info.ports.inference)


def median_by(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return sorted(results, key=lambda r: r[key])[len(results) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch-threads", type=int)
    parser.add_argument("--out", type=Path, help="markdown file to write the section into")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench-workers.json")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args(argv)
    wait_for_quiet(args.max_load, 300)
    info = machine_info(("torchserve",))
    servers = {}
    try:
        for n in args.workers:
            servers[n] = start_server(n, args.torch_threads)
            print(f"started {n} worker(s) per endpoint", flush=True)
        rounds: dict[int, dict[str, list[dict[str, Any]]]] = {n: {w: [] for w in workloads()} for n in args.workers}
        for name, (endpoint, body) in workloads().items():
            for _, ts, g in servers.values():  # warm-up, every worker of every server
                run_load(g.url, ts.token, endpoint, body, args.clients, 2.0)
            for r in range(args.rounds):
                for n, (_, ts, g) in servers.items():
                    result = run_load(g.url, ts.token, endpoint, body, args.clients, args.seconds)
                    rounds[n][name].append(result)
                    print(f"round {r + 1} workers={n} {name}: {result['rps']:.1f} req/s, p50 {result['p50_ms']:.0f} ms,"
                          f" p95 {result['p95_ms']:.0f} ms, errors {result['errors']}", flush=True)
    finally:
        for run_dir, _, g in servers.values():
            g.stop()
            server.stop(run_dir)
    info["load average at end"] = ", ".join(f"{v:.2f}" for v in (load_average() or ()))
    table = {n: {name: {**median_by(results, "rps"), "errors": sum(x["errors"] for x in results)}
                 for name, results in by_name.items()} for n, by_name in rounds.items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "clients": args.clients, "seconds": args.seconds,
                                     "rounds": args.rounds, "torch_threads": args.torch_threads, "results": table,
                                     "all_rounds": rounds}, indent=2))
    names = list(workloads())
    rows = []
    for n in args.workers:
        row = [str(n)]
        for name in names:
            cell = table[n][name]
            row.append(f"{cell['rps']:.1f} ({cell['p50_ms']:.0f} / {cell['p95_ms']:.0f} ms)")
        row.append(str(sum(table[n][name]["errors"] for name in names)))
        rows.append(row)
    text = (f"{args.clients} concurrent clients, {args.rounds} rounds of {args.seconds:.0f} s per cell (median round) "
            f"after a warm-up, worker counts interleaved, through the gate; "
            f"requests/s (p50 / p95 latency). Torch threads per worker: "
            f"{args.torch_threads or 'TorchServe default'}. Measured {dt.date.today().isoformat()}.\n\n"
            + markdown_table(["workers per endpoint", *names, "errors"], rows) + "\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(text)
    if args.out:
        replace_section(args.out, HEADING, text, title="# Deployment")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
