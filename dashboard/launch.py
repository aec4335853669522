"""Start and stop the dashboard in the background (``make run`` / ``make stop`` and the browser test).

    python -m dashboard.launch start [--port 8501] [--api-url URL] [--key-file PATH] [--run-dir DIR]
    python -m dashboard.launch stop  [--run-dir DIR]

The dashboard gets the API address and the inference token through its environment
(``CONVLENS_URL``, ``CONVLENS_KEY_FILE``); it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "streamlit_app.py"
DEFAULT_RUN_DIR = ROOT / "serve" / "run"


@dataclass(frozen=True)
class Dashboard:
    url: str
    pid: int
    log_file: Path


def _state_file(run_dir: Path) -> Path:
    return run_dir / "dashboard.json"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310 — loopback only
            return r.status == 200
    except OSError:
        return False


def start(port: int = 8501, api_url: str = "http://127.0.0.1:8080", key_file: Path | None = None,
          run_dir: Path = DEFAULT_RUN_DIR, timeout: float = 60.0) -> Dashboard:
    """Launch ``streamlit run`` in its own process group and wait until it answers its health check."""
    stop(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONVLENS_URL": api_url, "PYTHONPATH": str(ROOT)}
    if key_file is not None:
        env["CONVLENS_KEY_FILE"] = str(key_file)
    log_file = run_dir / "dashboard.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.maxUploadSize", "10"]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _state_file(run_dir).write_text(json.dumps({"pid": proc.pid, "url": url}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}; see {log_file}")
        if _healthy(url):
            return Dashboard(url, proc.pid, log_file)
        time.sleep(0.3)
    stop(run_dir)
    raise RuntimeError(f"the dashboard did not answer within {timeout:.0f} s; see {log_file}")


def stop(run_dir: Path = DEFAULT_RUN_DIR) -> bool:
    """Stop the dashboard started from ``run_dir``. True if one was running."""
    state = _state_file(run_dir)
    if not state.is_file():
        return False
    pid = int(json.loads(state.read_text())["pid"])
    state.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.launch")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CONVLENS_DASHBOARD_PORT", "8501")))
    parser.add_argument("--api-url", default=os.environ.get("CONVLENS_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args(argv)
    if args.action == "stop":
        print("dashboard stopped" if stop(args.run_dir) else "dashboard was not running")
        return 0
    try:
        dash = start(args.port, args.api_url, args.key_file, args.run_dir)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"dashboard: {dash.url}  (log: {dash.log_file})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
