"""The api container's main process: TorchServe on loopback, the nginx gate in front, the key shared.

1. TorchServe starts through ``serve.server.start`` (the same code as ``make run``): every API on
   127.0.0.1 inside the container, token authorisation on, the model API off, the metrics API off,
   the archives of every endpoint (built into the image) loaded from the model store.
2. The API key clients use is written to ``$CONVLENS_KEY_DIR/key_file.json`` (a volume the dashboard
   mounts read-only): TorchServe's inference key (never the management key), or, with
   ``$CONVLENS_API_KEY_FILE`` (a Kubernetes/compose secret), that key, which the gate then checks
   itself before forwarding with TorchServe's key (serve/gate.py) — one stable key for every replica.
3. The gate (``serve.gate``: nginx with read/idle timeouts and JSON errors) listens on
   ``0.0.0.0:$CONVLENS_PORT`` and forwards to TorchServe.
4. TorchServe's log is copied to stdout; if TorchServe or the gate dies the container exits (its
   restart policy brings it back); SIGTERM stops both.
5. With ``$CONVLENS_RAY_ADDRESS=HOST:PORT`` the container joins that Ray cluster as a node with no CPUs
   (``ray start --address=... --num-cpus=0``, from /tmp, retried every 10 s while the head starts), so the
   workers can send CNN-code work to its actors (docs/deployment.md); until then such requests answer 503.

Environment: CONVLENS_PORT (8080), CONVLENS_WORKERS (workers per endpoint, 1),
CONVLENS_WORKERS_<ENDPOINT> (one endpoint), CONVLENS_RUN_DIR, CONVLENS_KEY_DIR, the gate's
CONVLENS_GATE_* limits (serve/gate.py), TORCH_HOME (weights), CONVLENS_DATA_DIR (datasets),
CONVLENS_RAY_ADDRESS (a Ray cluster to join).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve import gate, server  # noqa: E402

INTERNAL_PORTS = server.Ports(inference=8085, management=8081, metrics=8082, grpc_inference=7070,
                              grpc_management=7071)
EXTRA_CONFIG = gate.TORCHSERVE_CONFIG  # metrics API off (serve/gate.py says why)


def log(message: str) -> None:
    print(f"[entrypoint] {message}", flush=True)


def workers_config(endpoints: list[str]) -> dict[str, dict[str, Any]]:
    """minWorkers = maxWorkers per endpoint from $CONVLENS_WORKERS / $CONVLENS_WORKERS_<ENDPOINT>."""
    config = {}
    default = os.environ.get("CONVLENS_WORKERS", "").strip()
    for endpoint in endpoints:
        raw = os.environ.get(f"CONVLENS_WORKERS_{endpoint.upper()}", "").strip() or default
        if not raw:
            continue
        try:
            n = int(raw)
        except ValueError:
            raise SystemExit(f"CONVLENS_WORKERS must be a whole number; got {raw!r}") from None
        if not 1 <= n <= 64:
            raise SystemExit(f"CONVLENS_WORKERS must be in [1, 64]; got {n}")
        config[endpoint] = {"minWorkers": n, "maxWorkers": n}
    return config


def share_key(token: str, key_dir: Path) -> Path:
    """Write ``{"inference": {"key": ...}}`` atomically (the client re-reads it on every call)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    target = key_dir / "key_file.json"
    tmp = key_dir / ".key_file.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as out:
        json.dump({"inference": {"key": token}}, out)
    os.replace(tmp, target)
    return target


def follow(path: Path, stop: threading.Event, offset: int = 0) -> None:
    """Copy the lines of ``path`` after ``offset`` to stdout (TorchServe writes its log to a file)."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.5)
    with open(path, errors="replace") as src:
        src.seek(min(offset, path.stat().st_size))
        while not stop.is_set():
            line = src.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.5)


RAY_JOIN_RETRY_S = 10.0
RAY_NODE_OBJECT_STORE_BYTES = 300_000_000  # this node only receives results: a small object store


def ray_join_command(address: str) -> list[str] | None:
    """``ray start`` joining ``address`` as a node with no CPUs or GPUs; None when there is nothing to join (unset,
    ``auto``, or a ``ray://`` address, which the workers refuse with a 503 saying why)."""
    address = address.strip()
    if not address or address == "auto" or address.startswith("ray://"):
        return None
    return ["ray", "start", f"--address={address}", "--num-cpus=0", "--num-gpus=0", "--disable-usage-stats",
            f"--object-store-memory={RAY_NODE_OBJECT_STORE_BYTES}"]


def join_ray(command: list[str], stop: threading.Event) -> None:
    """Run ``command`` (from /tmp: Ray writes its session files there) until it succeeds or the container stops."""
    if shutil.which(command[0]) is None:
        log("CONVLENS_RAY_ADDRESS is set but Ray is not installed; not joining")
        return
    attempt = 0
    while not stop.is_set():
        attempt += 1
        done = subprocess.run(command, cwd="/tmp", capture_output=True, text=True, check=False)
        if done.returncode == 0:
            log(f"joined the Ray cluster ({command[2]}) as a node with no CPUs")
            return
        if attempt == 1 or attempt % 6 == 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            log(f"Ray cluster not joined yet ({command[2]}): {last[0][:200]}; retrying every {RAY_JOIN_RETRY_S:.0f} s")
        stop.wait(RAY_JOIN_RETRY_S)


def alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def main() -> int:
    run_dir = server.run_dir_path()
    key_dir = Path(os.environ.get("CONVLENS_KEY_DIR", "/var/lib/convlens-key"))
    port = int(os.environ.get("CONVLENS_PORT", "8080"))
    baked = run_dir / "model-store" / "ENDPOINTS"
    endpoints = baked.read_text().split() if baked.is_file() else list(server.all_endpoints())
    stop_event = threading.Event()
    log_file = run_dir / "torchserve.log"
    offset = log_file.stat().st_size if log_file.exists() else 0  # a restarted container: only this run's lines
    threading.Thread(target=follow, args=(log_file, stop_event, offset), daemon=True).start()
    join = ray_join_command(os.environ.get("CONVLENS_RAY_ADDRESS", ""))
    if join is not None:
        threading.Thread(target=join_ray, args=(join, stop_event), daemon=True).start()

    terminating = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal terminating
        terminating = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    g = None
    try:
        log(f"starting TorchServe with {', '.join(endpoints)}")
        started = time.monotonic()
        # Archives are rebuilt only if the model store volume holds stale ones (an older image, other workers).
        info = server.start(run_dir, INTERNAL_PORTS, endpoints=tuple(endpoints),
                            model_config=workers_config(endpoints), extra_config=EXTRA_CONFIG,
                            timeout=float(os.environ.get("CONVLENS_START_TIMEOUT", "600")), log=log)
        if info.token is None or info.pid is None:
            raise server.ServerError("TorchServe started without a key file")
        log(f"TorchServe healthy in {time.monotonic() - started:.1f} s")
        api_key = None
        if os.environ.get("CONVLENS_API_KEY_FILE"):
            api_key = gate.check_key(Path(os.environ["CONVLENS_API_KEY_FILE"]).read_text(), "$CONVLENS_API_KEY_FILE")
            if api_key.startswith("CHANGE-ME"):
                raise gate.GateError("$CONVLENS_API_KEY_FILE holds the placeholder key: set a random one")
        share_key(api_key or info.token, key_dir)
        g = gate.start(run_dir, ("0.0.0.0", port), INTERNAL_PORTS.inference, api_key=api_key,
                       upstream_key=info.token if api_key else None)
        log(f"gate listening on 0.0.0.0:{port} (limits {g.limits})")
        while True:
            if not alive(info.pid):
                log("TorchServe exited; stopping")
                return 1
            if not g.running():
                log("the gate (nginx) exited; stopping")
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping")
        return 0 if terminating else 130
    except (server.ServerError, gate.GateError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    finally:
        if g is not None:
            g.stop()
        server.stop(run_dir)
        stop_event.set()


if __name__ == "__main__":
    raise SystemExit(main())
