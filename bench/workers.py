"""Throughput against the number of TorchServe workers per endpoint, on the built-in model, through the gate.

    .venv/bin/python bench/workers.py --out docs/deployment.md          # 1, 2, 4 workers (~5 min)
    .venv/bin/python bench/workers.py --workers 1 2 --seconds 5         # quicker

For each worker count a fresh TorchServe (classify and saliency endpoints, the shipped model configs
with minWorkers = maxWorkers = N) starts behind the nginx gate, exactly as the api container runs them.
Per workload, CLIENTS concurrent clients send requests as fast as they are answered for SECONDS
(after a warm-up); requests/s and latency percentiles are reported. Torch threads per worker are
TorchServe's default unless --torch-threads is given (then set through the model config).
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

from bench.timing import machine_info, markdown_table, replace_section, wait_for_quiet  # noqa: E402
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


def measure(workers: int, clients: int, seconds: float, torch_threads: int | None) -> dict[str, dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"convlens-bench-w{workers}-"))
    per_endpoint: dict[str, Any] = {"minWorkers": workers, "maxWorkers": workers}
    if torch_threads:
        per_endpoint["handler"] = {"torch_threads": torch_threads}
    info = server.start(run_dir, server.Ports.free(), endpoints=ENDPOINTS,
                        model_config={e: per_endpoint for e in ENDPOINTS}, timeout=600)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = gate.start(run_dir, ("127.0.0.1", port), info.ports.inference)
    results = {}
    try:
        assert info.token
        for name, (endpoint, body) in workloads().items():
            run_load(g.url, info.token, endpoint, body, clients, min(3.0, seconds))  # warm-up
            results[name] = run_load(g.url, info.token, endpoint, body, clients, seconds)
            print(f"workers={workers} {name}: {results[name]['rps']:.1f} req/s, p50 {results[name]['p50_ms']:.0f} ms,"
                  f" p95 {results[name]['p95_ms']:.0f} ms, errors {results[name]['errors']}", flush=True)
    finally:
        g.stop()
        server.stop(run_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--torch-threads", type=int)
    parser.add_argument("--out", type=Path, help="markdown file to write the section into")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "bench-workers.json")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args(argv)
    wait_for_quiet(args.max_load, 300)
    info = machine_info(("torchserve",))
    table: dict[int, dict[str, dict[str, Any]]] = {}
    for n in args.workers:
        table[n] = measure(n, args.clients, args.seconds, args.torch_threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "clients": args.clients, "seconds": args.seconds,
                                     "torch_threads": args.torch_threads, "results": table}, indent=2))
    names = list(workloads())
    rows = []
    for n in args.workers:
        row = [str(n)]
        for name in names:
            r = table[n][name]
            row.append(f"{r['rps']:.1f} ({r['p50_ms']:.0f} / {r['p95_ms']:.0f} ms)")
        row.append(str(sum(table[n][name]["errors"] for name in names)))
        rows.append(row)
    body = (f"{args.clients} concurrent clients, {args.seconds:.0f} s per cell after a warm-up, through the gate; "
            f"requests/s (p50 / p95 latency). Torch threads per worker: "
            f"{args.torch_threads or 'TorchServe default'}. Measured {dt.date.today().isoformat()}.\n\n"
            + markdown_table(["workers per endpoint", *names, "errors"], rows) + "\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(body)
    if args.out:
        replace_section(args.out, HEADING, body, title="# Deployment")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
