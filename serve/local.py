"""``convlens serve start`` (and so ``make run``): TorchServe behind the same gate as every deployment.

    from serve import local
    running = local.start()        # TorchServe on a private loopback port, the gate (nginx) on 127.0.0.1:8080
    running.url                    # what clients use: the gate
    local.status(); local.stop()   # both

TorchServe alone has no read or idle timeout and answers an oversize body with an empty 413 (serve/gate.py):
locally too, clients talk to the gate. The gate runs detached (it outlives ``convlens serve start``); its pid
and address are kept in ``gate.json`` in the run directory, its log in ``gate.log``. TorchServe gets the
settings of the api container (``gate.TORCHSERVE_CONFIG``: no metrics API) and listens on
``--upstream-port`` / ``$CONVLENS_UPSTREAM_PORT``, else a free loopback port. ``gated=False``
(``convlens serve start --no-gate``) starts bare TorchServe on the public port, as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve import gate, server

GATE_STATE = "gate.json"
GATE_LOG = "gate.log"
UPSTREAM_PORT_ENV = "CONVLENS_UPSTREAM_PORT"


@dataclass(frozen=True)
class Running:
    """TorchServe and, unless started with ``gated=False``, the gate in front of it."""

    server: server.ServerInfo
    gate_url: str | None
    gate_running: bool = False
    gate_pid: int | None = None

    @property
    def url(self) -> str:
        """Where clients send requests: the gate, or TorchServe itself when ungated."""
        return self.gate_url or self.server.inference_url

    @property
    def healthy(self) -> bool:
        return self.server.healthy and (self.gate_url is None or (self.gate_running and _gate_answers(self)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((server.HOST, 0))
        return int(s.getsockname()[1])


def upstream_port(given: int | None = None) -> int:
    """TorchServe's private port: the argument, else ``$CONVLENS_UPSTREAM_PORT``, else a free one."""
    if given is not None:
        return given
    raw = os.environ.get(UPSTREAM_PORT_ENV, "").strip()
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise server.ServerError(f"${UPSTREAM_PORT_ENV} must be a port number, got {raw!r}") from None
    return _free_port()


def _gate_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((run_dir / GATE_STATE).read_text()))
    except (OSError, ValueError):
        return None


def _gate_alive(run_dir: Path, state: Mapping[str, Any] | None) -> bool:
    """Is the gate of ``gate.json`` still an nginx running with this run directory's config?"""
    if not state:
        return False
    return str(run_dir / "gate.conf") in server._cmdline(int(state["pid"])) and bool(
        server._group_members(int(state["pid"])))


def _gate_answers(running: Running) -> bool:
    headers = {"Authorization": f"Bearer {running.server.token}"} if running.server.token else {}
    request = urllib.request.Request(f"{running.gate_url}/ping", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 — the loopback gate we started
            return True
    except (urllib.error.URLError, OSError):
        return False


def _start_gate(run_dir: Path, public_port: int, upstream: int, limits: gate.Limits | None) -> Running:
    """Start the detached gate in front of TorchServe's ``upstream`` port; record it in gate.json."""
    g = gate.start(run_dir, (server.HOST, public_port), upstream, limits, log_file=run_dir / GATE_LOG, detach=True)
    (run_dir / GATE_STATE).write_text(json.dumps({"pid": g.process.pid, "url": g.url, "config": str(g.config),
                                                  "upstream_port": upstream}, indent=2))
    return Running(server.status(run_dir, ping=False), g.url, True, g.process.pid)


def start(
    run_dir: str | Path | None = None,
    ports: server.Ports | None = None,
    *,
    gated: bool = True,
    upstream: int | None = None,
    limits: gate.Limits | None = None,
    endpoints: tuple[str, ...] | None = None,
    env: Mapping[str, str] | None = None,
    rebuild: bool = False,
    timeout: float = 180.0,
    log: Callable[[str], None] | None = None,
) -> Running:
    """Start TorchServe (on a private port when gated) and the gate on ``ports.inference``; wait until healthy.
    What is already running of this run directory is kept (a missing gate is started)."""
    run_dir = server.run_dir_path(run_dir)
    ports = ports or server.Ports.resolve()
    if not gated:
        info = server.start(run_dir, ports, endpoints=endpoints, env=env, rebuild=rebuild, timeout=timeout, log=log)
        return Running(info, None)
    current = status(run_dir)
    if current.server.running and (current.gate_running or current.server.ports.inference == ports.inference):
        return current  # already up (gated, or started with gated=False on the public port)
    if not current.server.running:
        if server._port_in_use(ports.inference):
            raise server.ServerError(f"port {ports.inference} (the API) on {server.HOST} is in use; choose another "
                                     f"with --inference-port or ${server.PORT_ENV['inference'][0]}")
        private = dataclasses.replace(ports, inference=upstream_port(upstream))
        info = server.start(run_dir, private, endpoints=endpoints, extra_config=gate.TORCHSERVE_CONFIG, env=env,
                            rebuild=rebuild, timeout=timeout, log=log)
    else:
        info = current.server
    try:
        running = _start_gate(run_dir, ports.inference, info.ports.inference, limits)
    except (gate.GateError, OSError):
        if not current.server.running:
            server.stop(run_dir)  # do not leave TorchServe without its gate
        raise
    return dataclasses.replace(running, server=info)


def _stop_gate(run_dir: Path, timeout: float = 10.0) -> bool:
    state = _gate_state(run_dir)
    stopped = False
    if state is not None and _gate_alive(run_dir, state):
        pid = int(state["pid"])
        stopped = True
        os.kill(pid, signal.SIGQUIT)  # nginx: graceful shutdown
        deadline = time.monotonic() + timeout
        while server._group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if server._group_members(pid):
            os.killpg(pid, signal.SIGKILL)
    (run_dir / GATE_STATE).unlink(missing_ok=True)
    return stopped


def stop(run_dir: str | Path | None = None, timeout: float = 30.0) -> tuple[bool, bool]:
    """Stop the gate, then TorchServe, of ``run_dir``: (gate was running, TorchServe was running)."""
    run_dir = server.run_dir_path(run_dir)
    return _stop_gate(run_dir), server.stop(run_dir, timeout)


def status(run_dir: str | Path | None = None, ping: bool = True) -> Running:
    """TorchServe's status, and the gate's when one was started for ``run_dir``."""
    run_dir = server.run_dir_path(run_dir)
    info = server.status(run_dir, ping=ping)
    state = _gate_state(run_dir)
    if state is None:
        return Running(info, None)
    return Running(info, str(state["url"]), _gate_alive(run_dir, state), int(state["pid"]))


__all__ = ["Running", "start", "status", "stop", "upstream_port"]
