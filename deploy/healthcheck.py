"""Container health checks (standard library only: both images run it).

    python3 deploy/healthcheck.py api        # GET /ping through the gate with the inference key
    python3 deploy/healthcheck.py dashboard  # Streamlit's /_stcore/health

Exit 0 when healthy, 1 otherwise (the reason on stderr).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=4) as resp:  # noqa: S310 — loopback inside the container
            return resp.status, resp.read(2048)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2048)


def check_api() -> str | None:
    key_file = Path(os.environ.get("CONVLENS_KEY_DIR", "/var/lib/convlens-key")) / "key_file.json"
    try:
        token = json.loads(key_file.read_text())["inference"]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no inference key in {key_file} yet"
    port = os.environ.get("CONVLENS_PORT", "8080")
    status, body = _get(f"http://127.0.0.1:{port}/ping", {"Authorization": f"Bearer {token}"})
    if status != 200:
        return f"/ping answered {status}: {body[:200].decode(errors='replace')}"
    if json.loads(body).get("status") != "Healthy":
        return f"/ping: {body[:200].decode(errors='replace')}"
    return None


def check_dashboard() -> str | None:
    port = os.environ.get("CONVLENS_DASHBOARD_PORT", "8501")
    status, body = _get(f"http://127.0.0.1:{port}/_stcore/health", {})
    return None if status == 200 else f"/_stcore/health answered {status}"


def main(argv: list[str]) -> int:
    checks = {"api": check_api, "dashboard": check_dashboard}
    if len(argv) != 1 or argv[0] not in checks:
        print(f"usage: healthcheck.py {'|'.join(checks)}", file=sys.stderr)
        return 2
    try:
        problem = checks[argv[0]]()
    except (OSError, ValueError) as exc:
        problem = f"{exc.__class__.__name__}: {exc}"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
