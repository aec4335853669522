"""Start, stop and inspect the ConvLens TorchServe server (used by ``convlens serve``, ``make run`` and the tests).

    from serve import server
    info = server.start()          # builds stale archives, starts TorchServe, waits for /ping
    info.token                     # the inference key (Authorization: Bearer ...)
    server.status()                # running? healthy? where are the key file and the log?
    server.stop()

Everything lives in one run directory (default ``serve/run``, or ``$CONVLENS_RUN_DIR``):

    config.properties   generated from serve/config.properties with the ports and paths filled in
    model-store/        the .mar archives (rebuilt when handler/core sources are newer)
    key_file.json       TorchServe's inference and management keys (written to its working directory)
    torchserve.log      Java's stdout/stderr;  logs/  TorchServe's own logs (model_log.log: the handlers)
    server.json         pid, process group and ports of the running server
    tmp/                TorchServe's temp dir (pid file, unpacked archives, worker sockets)

Ports come from the arguments, else ``$CONVLENS_INFERENCE_PORT``, ``$CONVLENS_MANAGEMENT_PORT``,
``$CONVLENS_METRICS_PORT``, ``$CONVLENS_GRPC_INFERENCE_PORT``, ``$CONVLENS_GRPC_MANAGEMENT_PORT``,
else 8080, 8081, 8082, 7070, 7071. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.archives import all_endpoints, build_archives

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "serve" / "config.properties"
LOG_CONFIG = ROOT / "serve" / "log4j2.xml"
DEFAULT_RUN_DIR = ROOT / "serve" / "run"
HOST = "127.0.0.1"
PORT_ENV: dict[str, tuple[str, int]] = {
    "inference": ("CONVLENS_INFERENCE_PORT", 8080),
    "management": ("CONVLENS_MANAGEMENT_PORT", 8081),
    "metrics": ("CONVLENS_METRICS_PORT", 8082),
    "grpc_inference": ("CONVLENS_GRPC_INFERENCE_PORT", 7070),
    "grpc_management": ("CONVLENS_GRPC_MANAGEMENT_PORT", 7071),
}
# What `convlens serve start` (and so `make run`) adds to the environment of the server it starts, for local
# development on 127.0.0.1; each only where the caller's environment does not set it (CONVLENS_MODEL_UPLOAD=0 keeps
# upload off). The containers (deploy/api/entrypoint.py) call start() without it: upload stays off there unless
# the operator sets CONVLENS_MODEL_UPLOAD=1 (docs/deployment.md).
MODEL_UPLOAD_ENV = "CONVLENS_MODEL_UPLOAD"  # convlens.techniques.corpus.model_files reads it in the workers
LOCAL_DEV_ENV: dict[str, str] = {MODEL_UPLOAD_ENV: "1"}  # add and remove models over the API


def local_dev_env() -> dict[str, str]:
    """:data:`LOCAL_DEV_ENV` less what ``os.environ`` already says (pass it to :func:`start` as ``env``)."""
    return {name: value for name, value in LOCAL_DEV_ENV.items() if name not in os.environ}


JAVA_MISSING = ("Java 17 or newer is required by TorchServe and was not found: install it "
                "(Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME")


class ServerError(RuntimeError):
    """The server could not be started, or is not in the state asked for."""


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def resolve(cls, **given: int | None) -> Ports:
        """Explicit ports win, then the environment, then the defaults."""
        values = {}
        for name, (env, default) in PORT_ENV.items():
            value = given.get(name)
            if value is None and os.environ.get(env):
                try:
                    value = int(os.environ[env])
                except ValueError:
                    raise ServerError(f"${env} must be a port number, got {os.environ[env]!r}") from None
            values[name] = int(value if value is not None else default)
        return cls(**values)

    @classmethod
    def free(cls) -> Ports:
        """Five currently free loopback ports (for tests and benchmarks)."""
        socks = []
        try:
            for _ in PORT_ENV:
                s = socket.socket()
                s.bind((HOST, 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


@dataclass(frozen=True)
class ServerInfo:
    run_dir: Path
    ports: Ports
    running: bool
    healthy: bool
    pid: int | None = None
    detail: str = ""

    @property
    def inference_url(self) -> str:
        return f"http://{HOST}:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports.metrics}"

    @property
    def key_file(self) -> Path:
        return self.run_dir / "key_file.json"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "torchserve.log"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "config.properties"

    @property
    def token(self) -> str | None:
        """The inference key."""
        return read_key(self.key_file, "inference")

    @property
    def management_token(self) -> str | None:
        return read_key(self.key_file, "management")


def run_dir_path(run_dir: str | Path | None = None) -> Path:
    return Path(run_dir or os.environ.get("CONVLENS_RUN_DIR") or DEFAULT_RUN_DIR).resolve()


def read_key(key_file: Path, kind: str = "inference") -> str | None:
    try:
        return str(json.loads(Path(key_file).read_text())[kind]["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def write_config(run_dir: Path, ports: Ports, model_store: Path, endpoints: tuple[str, ...] | None = None,
                 extra: Mapping[str, str] | None = None) -> Path:
    """The run's config.properties: the base file with ports, paths and the models filled in."""
    props = read_properties(BASE_CONFIG)
    props.update({
        "inference_address": f"http://{HOST}:{ports.inference}",
        "management_address": f"http://{HOST}:{ports.management}",
        "metrics_address": f"http://{HOST}:{ports.metrics}",
        "grpc_inference_address": HOST,
        "grpc_management_address": HOST,
        "grpc_inference_port": str(ports.grpc_inference),
        "grpc_management_port": str(ports.grpc_management),
        "model_store": str(model_store),
        # Archives come from the model store only (the model API is off anyway).
        "allowed_urls": f"file://{model_store}/.*",
        "load_models": ",".join(f"{e}.mar" for e in (endpoints or all_endpoints())),
    })
    props.update(extra or {})
    # Never weaken these, whatever ``extra`` says.
    props.update({"disable_token_authorization": "false", "enable_model_api": "false"})
    for key in ("inference_address", "management_address", "metrics_address"):
        if not props[key].startswith(f"http://{HOST}:"):
            raise ServerError(f"{key} must listen on {HOST}, got {props[key]}")
    path = run_dir / "config.properties"
    lines = ["# Generated by serve/server.py from serve/config.properties; edit that file instead."]
    lines += [f"{k}={v}" for k, v in props.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------- processes


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pgid: int, run_dir: Path) -> bool:
    """Is process group ``pgid`` still a TorchServe started for ``run_dir``?"""
    marker = str(run_dir / "config.properties")
    return any(marker in _cmdline(pid) for pid in _group_members(pgid))


def _state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((run_dir / "server.json").read_text()))
    except (OSError, ValueError):
        return None


def _request(url: str, token: str | None, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 — loopback URL we built
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _ready(info: ServerInfo, endpoints: tuple[str, ...]) -> tuple[bool, str]:
    token = info.token
    if token is None:
        return False, "no key file yet"
    code, body = _request(f"{info.inference_url}/ping", token)
    if code != 200:
        return False, f"/ping answered {code or 'nothing'} {body[:200].decode(errors='replace')}".strip()
    for endpoint in endpoints:  # a worker answers only once its handler is initialised
        code, body = _request(f"{info.inference_url}/predictions/{endpoint}", token,
                              json.dumps({"info": "classes", "model": "builtin"}).encode(), timeout=30)
        if code != 200:
            return False, f"{endpoint} answered {code or 'nothing'}"
    return True, "healthy"


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Netty does: TIME_WAIT is not "in use"
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    run_dir: str | Path | None = None,
    ports: Ports | None = None,
    *,
    endpoints: tuple[str, ...] | None = None,
    model_config: Mapping[str, Mapping[str, Any]] | None = None,
    extra_config: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    rebuild: bool = False,
    wait: bool = True,
    timeout: float = 180.0,
    log: Callable[[str], None] | None = None,
) -> ServerInfo:
    """Start TorchServe in the background; with ``wait``, return once every endpoint answers.

    ``model_config`` overrides model-config YAML keys per endpoint (e.g. ``{"<endpoint>":
    {"batchSize": 1}}``); ``env`` adds environment variables for the server and its workers.
    If a server of this run directory is already running, its status is returned.
    """
    run_dir = run_dir_path(run_dir)
    ports = ports or Ports.resolve()
    endpoints = endpoints or all_endpoints()
    current = status(run_dir)
    if current.running:
        return dataclasses.replace(current, detail=f"already running (pid {current.pid}); {current.detail}")
    java = find_java()
    if java is None:
        raise ServerError(JAVA_MISSING)
    _check_ports_free(ports)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_store = run_dir / "model-store"
    build_archives(model_store, force=rebuild, overrides=model_config, endpoints=endpoints, log=log)
    config = write_config(run_dir, ports, model_store, endpoints, extra_config)
    tmp = run_dir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (run_dir / "key_file.json").unlink(missing_ok=True)
    proc_env = _server_env(run_dir, tmp, java, env)
    cmd = [sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs",
           "--ts-config", str(config), "--log-config", str(LOG_CONFIG), "--model-store", str(model_store),
           "--models", *(f"{e}={e}.mar" for e in endpoints)]
    log_file = run_dir / "torchserve.log"
    with open(log_file, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=run_dir, env=proc_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (run_dir / "server.json").write_text(json.dumps({
        "pid": proc.pid, "pgid": proc.pid, "ports": dataclasses.asdict(ports), "started": time.time(),
        "endpoints": list(endpoints),
    }, indent=2))
    info = ServerInfo(run_dir, ports, True, False, proc.pid, "starting")
    return _wait_healthy(info, proc, endpoints, log_file, timeout) if wait else info


def _check_ports_free(ports: Ports) -> None:
    for name, port in dataclasses.asdict(ports).items():
        if _port_in_use(port):
            env_name = PORT_ENV[name][0]
            raise ServerError(f"port {port} ({name}) on {HOST} is in use; choose another with "
                              f"--{name.replace('_', '-')}-port or ${env_name}")


def _server_env(run_dir: Path, tmp: Path, java: str, env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of TorchServe and its workers."""
    proc_env = {**os.environ, **(env or {})}
    proc_env.update({
        # The handlers import `handlers` and `convlens` from this checkout.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), proc_env.get("PYTHONPATH", "")) if p),
        # TorchServe keeps its pid file, unpacked archives and worker sockets in the temp dir:
        # one per run directory, so several servers (a test, a benchmark, `make run`) can coexist.
        "TEMP": str(tmp), "TMPDIR": str(tmp),
        "LOG_LOCATION": str(run_dir / "logs"), "METRICS_LOCATION": str(run_dir / "logs"),
        "PYTHONUNBUFFERED": "1",
    })
    if os.environ.get("JAVA_HOME") is None:
        proc_env["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    return proc_env


def _wait_healthy(info: ServerInfo, proc: subprocess.Popen[bytes], endpoints: tuple[str, ...], log_file: Path,
                  timeout: float) -> ServerInfo:
    """``info`` once every endpoint answers; stops the server and raises if it exits or times out first."""
    run_dir = info.run_dir
    deadline = time.monotonic() + timeout
    detail = "starting"
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                stop(run_dir)
                raise ServerError(f"TorchServe exited with code {proc.returncode} during start; "
                                  f"log {log_file}:\n{_log_tail(log_file)}")
            healthy, detail = _ready(info, endpoints)
            if healthy:
                return dataclasses.replace(info, healthy=True, detail=detail)
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop(run_dir)
        raise
    stop(run_dir)
    raise ServerError(f"TorchServe did not become healthy within {timeout:.0f} s ({detail}); "
                      f"log {log_file}:\n{_log_tail(log_file)}")


def stop(run_dir: str | Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the server of ``run_dir`` (its whole process group: launcher, Java, workers). True if one ran."""
    run_dir = run_dir_path(run_dir)
    state = _state(run_dir)
    if state is None:
        return False
    pgid = int(state["pgid"])
    stopped = False
    if _group_members(pgid) and _is_ours(pgid, run_dir):
        stopped = True
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_members(pgid):
            _signal_group(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
    for name in ("server.json", "key_file.json"):
        (run_dir / name).unlink(missing_ok=True)
    return stopped


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def status(run_dir: str | Path | None = None, ping: bool = True) -> ServerInfo:
    """Is the server of ``run_dir`` running, and does it answer /ping with its token?"""
    run_dir = run_dir_path(run_dir)
    state = _state(run_dir)
    if state is None:
        return ServerInfo(run_dir, Ports.resolve(), False, False, None, "not running")
    ports = Ports(**state["ports"])
    pgid = int(state["pgid"])
    if not (_group_members(pgid) and _is_ours(pgid, run_dir)):
        return ServerInfo(run_dir, ports, False, False, None, "not running (stale server.json)")
    info = ServerInfo(run_dir, ports, True, False, pgid, "running")
    if not ping:
        return info
    healthy, detail = _ready(info, ())
    return dataclasses.replace(info, healthy=healthy, detail=detail)


__all__ = ["LOCAL_DEV_ENV", "Ports", "ServerError", "ServerInfo", "build_archives", "find_java", "local_dev_env",
           "read_key", "start", "status", "stop", "write_config"]
