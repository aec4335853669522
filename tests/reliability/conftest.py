"""A real TorchServe behind the real gate (nginx), as the containers run them, on free loopback ports.

The gate's timeouts are short here (2 s headers and body pauses, 3 s idle) so the slow-client tests are quick;
the production defaults are in serve/gate.py. Tests marked ``soak`` (minutes) are deselected unless
``CONVLENS_SOAK=1`` (``make soak``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from serve import gate, server

TEST_LIMITS = gate.Limits(header_timeout=2, body_timeout=2, idle_timeout=3, send_timeout=10, upstream_timeout=300)
RESULTS = Path(os.environ.get("CONVLENS_RELIABILITY_OUT", "out/reliability"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long load/recovery runs, only with CONVLENS_SOAK=1 (make soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CONVLENS_SOAK") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("soak") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@dataclass(frozen=True)
class Stack:
    info: server.ServerInfo
    gate: gate.Gate
    run_dir: Path

    @property
    def url(self) -> str:
        """The gate: what clients of a deployment talk to."""
        return self.gate.url

    @property
    def direct_url(self) -> str:
        """TorchServe itself (loopback only in a deployment)."""
        return self.info.inference_url

    @property
    def token(self) -> str:
        assert self.info.token
        return self.info.token

    @property
    def gate_port(self) -> int:
        return int(self.gate.url.rsplit(":", 1)[1])

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def post(self, endpoint: str, timeout: float = 120, **kwargs: Any) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return requests.post(f"{self.url}/predictions/{endpoint}", headers=headers, timeout=timeout, **kwargs)

    def workers(self, endpoint: str) -> list[dict[str, Any]]:
        """The endpoint's workers from the management API (loopback, management key)."""
        r = requests.get(f"{self.info.management_url}/models/{endpoint}",
                         headers={"Authorization": f"Bearer {self.info.management_token}"}, timeout=10)
        r.raise_for_status()
        return list(r.json()[0]["workers"])

    def group_rss_mb(self) -> float:
        """Resident memory of TorchServe's whole process group (launcher, Java, every worker), in MB."""
        total = 0
        for pid in server._group_members(int(self.info.pid or 0)):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("reliability")
    torch_home = tmp_path_factory.mktemp("torch-home")  # no ImageNet weights on this server
    info = server.start(run_dir, server.Ports.free(), env={"TORCH_HOME": str(torch_home), "CONVLENS_WEIGHTS_DIR": ""},
                        extra_config=gate.TORCHSERVE_CONFIG, timeout=300)  # as the api container runs it
    g = None
    try:
        assert info.healthy, info.detail
        g = gate.start(run_dir, ("127.0.0.1", free_port()), info.ports.inference, TEST_LIMITS,
                       log_file=run_dir / "gate.log")
        yield Stack(info, g, run_dir)
    finally:
        if g is not None:
            g.stop()
        server.stop(run_dir)


def wait_until_ok(stack: Stack, endpoint: str, body: dict[str, Any], timeout: float = 60.0) -> float:
    """Seconds until ``endpoint`` answers 200 again (polled every 0.25 s); fails after ``timeout``."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        try:
            r = stack.post(endpoint, json=body, timeout=30)
            if r.status_code == 200:
                return time.monotonic() - started
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise AssertionError(f"{endpoint} not answering 200 within {timeout} s: {last}")


def record(name: str, data: dict[str, Any]) -> None:
    """Measured figures for docs/reliability.md (out/reliability/NAME.json)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
