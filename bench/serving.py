"""Serving overhead and batching: TorchServe vs the same handler called in-process.

    .venv/bin/python bench/serving.py --out docs/benchmarks.md      # full run (~4 min)
    .venv/bin/python bench/serving.py --quick                        # smoke run, prints only

Latency: one saliency request on the built-in model (a 64 px PNG, base64 in JSON) for
Grad-CAM and vanilla gradient, sent one at a time (a) over HTTP to TorchServe with
batching on (the shipped serve/model-config/saliency.yaml), (b) to TorchServe
with batching off (batchSize 1), and (c) to the same handler class called in-process
with a hand-built context (no HTTP, no Java, no worker IPC). The three are timed
round-robin (bench.timing.interleaved); p50 and p95 of each over >= 200 requests. The
target is at most 15 ms added at p50 by TorchServe.

Throughput: 8 concurrent clients send Grad-CAM requests as fast as they get answers,
against the batching-on server and the batching-off one (batchSize 1); rounds
alternate between the two servers and the median round is reported. Both servers run
at the same time, each with one worker, on the same cores.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import (  # noqa: E402
    concurrently,
    fmt_ms,
    interleaved,
    load_average,
    machine_info,
    markdown_table,
    replace_section,
    wait_for_quiet,
)

HEADING = "## Serving (bench/serving.py)"
TARGET_ADDED_MS = 15.0
CLIENTS = 8
METHODS = ("gradcam", "vanilla")
FULL = {"latency": (10, 200), "throughput_rounds": 3, "requests_per_client": 40}
QUICK = {"latency": (3, 20), "throughput_rounds": 1, "requests_per_client": 8}
BATCH_OFF = {"batchSize": 1}


def shipped_batching() -> dict[str, int]:
    """batchSize and maxBatchDelay of serve/model-config/saliency.yaml."""
    from serve.archives import model_config

    config = model_config("saliency")
    return {"batchSize": int(config["batchSize"]), "maxBatchDelay": int(config["maxBatchDelay"])}


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def request_body(method: str) -> dict[str, Any]:
    from PIL import Image

    from convlens.builtin.dataset import HELDOUT_SEED, render_sample

    buffer = io.BytesIO()
    Image.fromarray(render_sample(HELDOUT_SEED, 4).image).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode("ascii"), "model": "builtin", "target": None,
            "layer": None, "params": {"method": method}}


def in_process_handler() -> tuple[Any, Callable[[dict[str, Any]], Any]]:
    """The same handler class TorchServe runs, with a hand-built context (as in tests/handlers)."""
    from ts.context import Context, RequestProcessor

    from handlers.attribution import AttributionHandler as SaliencyHandler
    from serve.archives import model_config

    config = model_config("saliency")
    context = Context("saliency", str(ROOT), {}, 1, None, "0.12.0", model_yaml_config=config)
    handler = SaliencyHandler()
    handler.initialize(context)

    def call(body: dict[str, Any]) -> Any:
        # What TorchServe's worker does per request: the JSON body arrives decoded as a dict.
        row = {"body": json.loads(json.dumps(body))}
        context.request_ids = {0: "bench"}
        context.request_processor = [RequestProcessor({})]
        out = handler.handle([row], context)
        assert context.get_response_status(0)[0] == 200, out
        return json.loads(out[0])

    return handler, call


def http_caller(info: Any) -> Callable[[dict[str, Any]], Any]:
    import requests

    session = requests.Session()
    url = f"{info.inference_url}/predictions/saliency"
    headers = {"Authorization": f"Bearer {info.token}"}

    def call(body: dict[str, Any]) -> Any:
        r = session.post(url, json=body, headers=headers, timeout=60)
        r.raise_for_status()
        return r.json()

    return call


def throughput(info: Any, body: dict[str, Any], clients: int, per_client: int) -> dict[str, float]:
    """``clients`` threads, each with its own connection, sending ``per_client`` requests back to back."""
    callers = [http_caller(info) for _ in range(clients)]
    for call in callers:  # connections open, worker warm
        call(body)
    latencies: list[float] = []
    lock = threading.Lock()

    def client(call: Callable[[dict[str, Any]], Any]) -> None:
        mine = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            call(body)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    wall = concurrently([lambda c=c: client(c) for c in callers])
    return {"rps": clients * per_client / wall, "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95), "n": float(len(latencies))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="markdown file to write the section into (e.g. docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="few repetitions, for a smoke test")
    parser.add_argument("--max-load", type=float, default=1.0, help="wait until the 1-min load average is below")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--max-batch-delay", type=int, help="override the shipped maxBatchDelay (ms)")
    args = parser.parse_args(argv)
    reps = QUICK if args.quick else FULL

    from serve import server

    batch_on = shipped_batching()
    if args.max_batch_delay is not None:
        batch_on["maxBatchDelay"] = args.max_batch_delay

    if not args.quick and not wait_for_quiet(args.max_load, args.wait):
        print(f"WARNING: load average still >= {args.max_load}; timing anyway", file=sys.stderr)
    info_machine = machine_info(("torchserve", "requests"))
    from convlens.models import find_weights

    weights_note = "trained checkpoint" if find_weights("builtin") else "checkpoint MISSING"
    bodies = {m: request_body(m) for m in METHODS}

    with tempfile.TemporaryDirectory(prefix="convlens-bench-") as tmp:
        runs = {"on": Path(tmp) / "batch-on", "off": Path(tmp) / "batch-off"}
        servers: dict[str, Any] = {}
        try:
            for name, overrides in (("on", batch_on), ("off", BATCH_OFF)):
                print(f"starting TorchServe, batching {name} ({overrides}) ...", flush=True)
                servers[name] = server.start(runs[name], server.Ports.free(),
                                             model_config={"saliency": overrides}, timeout=240)
            _handler, local = in_process_handler()
            latency: dict[str, dict[str, list[float]]] = {}
            for method in METHODS:
                body = bodies[method]
                calls = {"TorchServe, batching on": http_caller(servers["on"]),
                         "TorchServe, batching off": http_caller(servers["off"]),
                         "in-process handler": local}
                for call in calls.values():  # check the answers agree before timing
                    assert call(body)["target"] == local(body)["target"]
                warmup, n = reps["latency"]
                print(f"latency {method}: {n} requests per path ...", flush=True)
                stats = interleaved({k: (lambda c=c, b=body: c(b)) for k, c in calls.items()}, reps=n,
                                    warmup=warmup)
                latency[method] = {k: list(s.times) for k, s in stats.items()}
            tput: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
            for r in range(reps["throughput_rounds"]):
                for name in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    result = throughput(servers[name], bodies["gradcam"], CLIENTS, reps["requests_per_client"])
                    print(f"throughput round {r + 1}, batching {name}: {result['rps']:.1f} req/s", flush=True)
                    tput[name].append(result)
        finally:
            for run in runs.values():
                server.stop(run)

    load_end = load_average()
    rows = []
    verdicts = []
    for method, paths in latency.items():
        base = statistics.median(paths["in-process handler"])
        for path, times in paths.items():
            p50, p95 = statistics.median(times), percentile(times, 0.95)
            added = "—" if path == "in-process handler" else f"+{fmt_ms(p50 - base)}"
            rows.append([method, path, str(len(times)), fmt_ms(p50), fmt_ms(p95), added])
        added_on = (statistics.median(paths["TorchServe, batching on"]) - base) * 1e3
        added_off = (statistics.median(paths["TorchServe, batching off"]) - base) * 1e3
        verdicts.append(f"{method}: +{added_on:.1f} ms (batching on), +{added_off:.1f} ms (batching off)")
    latency_table = markdown_table(["method", "path", "n", "p50 ms", "p95 ms", "added at p50 ms"], rows,
                                   align="llrrrr")

    def median_round(results: list[dict[str, float]]) -> dict[str, float]:
        return sorted(results, key=lambda r: r["rps"])[len(results) // 2]

    on, off = median_round(tput["on"]), median_round(tput["off"])
    tput_rows = [
        [f"on (batchSize {batch_on['batchSize']}, maxBatchDelay {batch_on['maxBatchDelay']} ms)", str(CLIENTS),
         str(int(on["n"])), f"{on['rps']:.1f}", fmt_ms(on["p50"]), fmt_ms(on["p95"]), f"{on['rps'] / off['rps']:.2f}×"],
        ["off (batchSize 1)", str(CLIENTS), str(int(off["n"])), f"{off['rps']:.1f}", fmt_ms(off["p50"]),
         fmt_ms(off["p95"]), "1.00×"],
    ]
    tput_table = markdown_table(["batching", "clients", "requests", "req/s", "p50 ms", "p95 ms", "vs off"],
                                tput_rows, align="lrrrrrr")
    all_rounds = ", ".join(f"{name}: " + " / ".join(f"{r['rps']:.1f}" for r in rs) for name, rs in tput.items())
    worst = max(statistics.median(p["TorchServe, batching on"]) - statistics.median(p["in-process handler"])
                for p in latency.values()) * 1e3
    met = "met" if worst <= TARGET_ADDED_MS else "NOT met"

    machine = "\n".join(f"- {k}: {v}" for k, v in info_machine.items())
    if load_end is not None:
        machine += "\n- load average at end: " + ", ".join(f"{v:.2f}" for v in load_end)
    body = f"""\
Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}{' (--quick: too few requests to trust)' if args.quick else ''}.
One saliency request on the built-in model ({weights_note}; a 64 px PNG sent as base64 JSON, response with
input/map/overlay PNGs), through TorchServe {info_machine.get('torchserve')} over loopback HTTP with the
inference token, against the same handler class called in-process with a hand-built `ts.context.Context`.

{machine}

### Latency, one request at a time

{latency_table}

Requests sent one after another, the three paths round-robin (`bench.timing.interleaved`). Target: TorchServe
adds at most {TARGET_ADDED_MS:.0f} ms at p50 with batching on as shipped (batchSize {batch_on['batchSize']},
maxBatchDelay {batch_on['maxBatchDelay']} ms) — **{met}** (worst: +{worst:.1f} ms;
{'; '.join(verdicts)}). With batching on, a lone request waits out `maxBatchDelay` for company (TorchServe
polls for more requests until the batch is full or the delay has passed): that wait is part of the added time.

### Throughput, {CLIENTS} concurrent clients (Grad-CAM)

{tput_table}

Median of {len(tput['on'])} round(s), rounds alternating between the servers (req/s per round: {all_rounds}).
Each server has one worker; the clients run on the same {info_machine['cores'].split(' ')[0]} cores. Batching
lets the handler run each group of compatible requests as one forward/backward pass
(`handlers/base.py` groups a batch by model, method, layer and parameters).
"""
    print()
    print(HEADING)
    print()
    print(body)
    if args.out:
        replace_section(Path(args.out), HEADING, body)
        print(f"wrote section to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
