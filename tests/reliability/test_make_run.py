"""``make run`` (``convlens serve start``) serves through the same gate as the containers: TorchServe on a private
port, nginx on the public one with its timeouts and JSON errors; ``convlens call`` works there with the key, and
``convlens serve stop`` stops both. One server with the classify endpoint only, started by the real command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from serve import server
from tests.reliability.conftest import free_port
from tests.reliability.test_slow_clients import SLACK, connection, held_for

ROOT = Path(__file__).resolve().parents[2]
CONVLENS = [str(Path(sys.executable).parent / "convlens")]  # the console script `make run` calls
BODY_TIMEOUT = 2  # $CONVLENS_GATE_BODY_TIMEOUT for this server (production: 10 s)
SAMPLE = ROOT / "dashboard" / "samples" / "ring.png"


@dataclass(frozen=True)
class Local:
    run_dir: Path
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        token = server.read_key(self.run_dir / "key_file.json")
        assert token
        return token


def convlens(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CONVLENS, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    run_dir = tmp_path_factory.mktemp("make-run")
    ports = server.Ports.free()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONVLENS_GATE_BODY_TIMEOUT": str(BODY_TIMEOUT),
           "CONVLENS_GATE_HEADER_TIMEOUT": "2", "TORCH_HOME": str(tmp_path_factory.mktemp("torch-home")),
           "CONVLENS_WEIGHTS_DIR": "", "CONVLENS_RUN_DIR": str(run_dir)}
    args = ["serve", "start", "--endpoint", "classify", "--timeout", "300", "--inference-port", str(ports.inference),
            "--management-port", str(ports.management), "--metrics-port", str(ports.metrics),
            "--grpc-inference-port", str(ports.grpc_inference), "--grpc-management-port", str(ports.grpc_management),
            "--upstream-port", str(free_port())]
    started = convlens(env, *args, timeout=400)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "gate:           nginx" in started.stdout, started.stdout
        yield Local(run_dir, ports.inference, env)
    finally:
        convlens(env, "serve", "stop")


def test_the_gate_outlives_serve_start_and_convlens_call_works_through_it(local: Local, tmp_path: Path) -> None:
    assert server.status(local.run_dir, ping=False).ports.inference != local.port  # TorchServe is private
    r = requests.get(f"{local.url}/ping", headers={"Authorization": f"Bearer {local.token}"}, timeout=10)
    assert r.status_code == 200  # the command has exited, the gate it started still answers
    called = convlens({**local.env, "CONVLENS_URL": local.url}, "call", "classify", str(SAMPLE), "--json",
                      "--out", str(tmp_path))
    assert called.returncode == 0 and '"target_label": "ring"' in called.stdout, called.stderr
    status = convlens(local.env, "serve", "status")
    assert status.returncode == 0 and "behind its gate: healthy" in status.stdout, status.stdout


def test_a_slow_body_is_cut_within_the_gate_read_timeout(local: Local) -> None:
    head = (f"POST /predictions/classify HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {local.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    with connection(local.port, 5) as s:
        s.sendall(head + b'{"image": ')  # 10 of the 1,000 bytes it declared
        held, answer = held_for(s, 30)
    assert held <= BODY_TIMEOUT + SLACK, f"held {held:.1f} s"
    assert answer == b"" or b" 408 " in answer.split(b"\r\n", 1)[0], answer[:200]


def test_a_17_mb_body_gets_a_json_413_naming_body(local: Local) -> None:
    r = requests.post(f"{local.url}/predictions/classify", data=b"0" * (17 * 1024 * 1024), timeout=60,
                      headers={"Authorization": f"Bearer {local.token}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/json"
    assert r.json()["field"] == "body"


def test_serve_stop_stops_the_gate_and_torchserve(local: Local) -> None:
    stopped = convlens(local.env, "serve", "stop")
    assert stopped.returncode == 0 and "gate stopped" in stopped.stdout, stopped.stdout
    assert not server.status(local.run_dir, ping=False).running
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", local.port)) != 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"port {local.port} still accepts connections after serve stop")
