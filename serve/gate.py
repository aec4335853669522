"""The gate: an nginx in front of TorchServe's inference API, for every deployment that is not local dev.

    from serve import gate
    g = gate.start(run_dir, listen=("0.0.0.0", 8080), upstream_port=8085)   # TorchServe on 127.0.0.1:8085
    g.url; g.stop()

    python -m serve.gate render --listen 0.0.0.0:8080 --upstream-port 8085   # print the nginx config

TorchServe 0.12 has no read or idle timeout (its Netty pipeline holds a connection that declared
more bytes than it sends, or sends nothing, for ever) and answers an oversize body with an empty 413.
The gate bounds both and answers its own errors as JSON ``{"error": ..., "field": ...}`` like the
handlers do. It buffers the whole request body before TorchServe sees a byte, so slow clients
cost nginx a file descriptor, never a TorchServe frontend thread.

Limits (environment variables, seconds unless said otherwise):

    CONVLENS_GATE_HEADER_TIMEOUT  10    request line and headers must arrive within this
    CONVLENS_GATE_BODY_TIMEOUT    10    longest pause between two reads of the body
    CONVLENS_GATE_IDLE_TIMEOUT    30    keep-alive connection with no new request
    CONVLENS_GATE_SEND_TIMEOUT    30    longest pause of a client reading the response
    CONVLENS_GATE_UPSTREAM_TIMEOUT 960  longest wait for TorchServe's answer (synthesis jobs: 900)
    CONVLENS_GATE_MAX_BODY        16m   nginx size syntax; TorchServe's max_request_size is 16 MiB
    CONVLENS_GATE_MAX_CONNECTIONS 512   per worker process

API key: by default the gate passes ``Authorization`` through and TorchServe checks its own inference
key (random at each start). With ``api_key`` (``$CONVLENS_API_KEY_FILE`` in the container: a Kubernetes
Secret, a compose secret) the gate checks that key itself, answers 401 JSON otherwise, and forwards
the request with TorchServe's key: every replica behind a Service then accepts the same, stable key.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SIZE = re.compile(r"^[0-9]+[kKmM]?$")
KEY = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # nothing nginx would read as syntax
DEFAULTS: dict[str, str] = {
    "header_timeout": "10",
    "body_timeout": "10",
    "idle_timeout": "30",
    "send_timeout": "30",
    "upstream_timeout": "960",
    "max_body": "16m",
    "max_connections": "512",
}


# TorchServe settings of every gated deployment (the api container; the reliability tests run the same): what
# the product does not use is off. The model API is forced off by serve/server.py; management and gRPC cannot
# be switched off in TorchServe 0.12 and listen on 127.0.0.1 only.
TORCHSERVE_CONFIG = {"enable_metrics_api": "false"}
UPSTREAM_ERRORS = (507,)  # only TorchServe sends these (nginx never does)
PASSED_THROUGH = (400, 404)  # the handlers' own 4xx JSON and TorchServe's "model not found" reach the client as is
# The documented API (docs/serving.md): path prefix or exact path, the one method served there. Anything else is
# 405 with ``Allow`` (a wrong method) or 404 (a path TorchServe has but ConvLens does not use: /explanations,
# the KServe /v1 and /v2 routes, the API description).
ROUTES = (("/predictions/", "POST"), ("= /ping", "GET"))


class GateError(RuntimeError):
    """nginx is missing, or did not start."""


@dataclass(frozen=True)
class Limits:
    header_timeout: int = 10
    body_timeout: int = 10
    idle_timeout: int = 30
    send_timeout: int = 30
    upstream_timeout: int = 960
    max_body: str = "16m"
    max_connections: int = 512

    @classmethod
    def from_env(cls, **given: str | int) -> Limits:
        """Explicit values win, then ``$CONVLENS_GATE_<NAME>``, then the defaults."""
        values: dict[str, str | int] = {}
        for name, default in DEFAULTS.items():
            raw = given.get(name, os.environ.get(f"CONVLENS_GATE_{name.upper()}", default))
            if name == "max_body":
                if not SIZE.fullmatch(str(raw)):
                    raise GateError(f"CONVLENS_GATE_MAX_BODY must look like 16m, 512k or 1048576; got {raw!r}")
                values[name] = str(raw)
            else:
                try:
                    number = int(raw)
                except (TypeError, ValueError):
                    raise GateError(f"CONVLENS_GATE_{name.upper()} must be a whole number; got {raw!r}") from None
                if number < 1:
                    raise GateError(f"CONVLENS_GATE_{name.upper()} must be at least 1; got {number}")
                values[name] = number
        return cls(**values)  # type: ignore[arg-type]

    @property
    def max_body_bytes(self) -> int:
        unit = {"k": 1024, "m": 1024 * 1024}.get(self.max_body[-1].lower(), 1)
        return int(self.max_body.rstrip("kKmM")) * unit


def _json(message: str, field_name: str | None) -> str:
    """A JSON error body as an nginx string literal (no quotes or backslashes in our messages)."""
    value = "null" if field_name is None else f'\\"{field_name}\\"'
    return f'"{{\\"error\\": \\"{message}\\", \\"field\\": {value}}}"'


def check_key(key: str, what: str = "the API key", min_length: int = 16) -> str:
    key = key.strip()
    if not (KEY.fullmatch(key) and min_length <= len(key) <= 256):
        raise GateError(f"{what} must be {min_length} to 256 characters of A-Z a-z 0-9 . _ ~ + / = -")
    return key


NGINX_CONF = """# Generated by serve/gate.py; edit that file instead.
{user}worker_processes 1;
pid {run_dir}/gate.pid;
error_log stderr warn;
events {{
    worker_connections {limits.max_connections};
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    # Slow or silent clients: TorchServe has no timeouts of its own.
    client_header_timeout {limits.header_timeout}s;
    client_body_timeout {limits.body_timeout}s;
    keepalive_timeout {limits.idle_timeout}s;
    send_timeout {limits.send_timeout}s;
    reset_timedout_connection on;
    lingering_timeout 2s;
    lingering_time 5s;
    client_max_body_size {limits.max_body};
    client_body_buffer_size 1m;
    large_client_header_buffers 4 16k;

{key_map}
    # One loopback connection per request: TorchServe resets idle kept-alive connections.
    upstream torchserve {{
        server 127.0.0.1:{upstream_port};
    }}

    server {{
        listen {listen_host}:{listen_port} reuseport;
{error_pages}
{error_locations}

{locations}
        location / {{
            return 404;
        }}
    }}
}}
"""


def render(listen_host: str, listen_port: int, upstream_port: int, run_dir: Path, limits: Limits,
           api_key: str | None = None, upstream_key: str | None = None) -> str:
    """The whole nginx.conf: one worker, no root, everything under ``run_dir``.

    With ``api_key``, requests must carry ``Authorization: Bearer <api_key>`` and are forwarded with
    ``Bearer <upstream_key>`` (TorchServe's inference key)."""
    if api_key is not None:
        api_key = check_key(api_key)
        if upstream_key is None:
            raise GateError("an api_key needs the upstream (TorchServe) key to forward with")
        upstream_key = check_key(upstream_key, "TorchServe's key", min_length=1)
    errors = _error_bodies(limits)
    error_pages, location_pages, error_locations = _error_config(errors)
    tmp = run_dir / "gate-tmp"
    key_map, key_check = _key_config(api_key, upstream_key)
    # Started by root (a test or dev machine; the containers run as a user) nginx would switch its worker to
    # `nobody`, which cannot reach a private run directory: keep the worker as the user that started it.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    proxied = _proxied_location(key_check, location_pages, limits)
    locations = "\n".join(f"        location {path} {{\n"
                           f"            if ($request_method != {method}) {{ return 405; }}\n"
                           f"            error_page 405 /_convlens_error/405-{method}.json;\n{proxied}        }}"
                           for path, method in ROUTES)
    return NGINX_CONF.format(user=user, run_dir=run_dir, limits=limits, tmp=tmp, key_map=key_map,
                             upstream_port=upstream_port, listen_host=listen_host, listen_port=listen_port,
                             error_pages=error_pages, error_locations=error_locations, locations=locations)


def _error_bodies(limits: Limits) -> dict[int, str]:
    """The JSON body of each error the gate answers itself."""
    return {
        400: _json("the request could not be read (malformed HTTP)", None),
        401: _json("missing or wrong API key: send Authorization: Bearer <key>", "Authorization"),
        408: _json(f"the request was not received in time (headers within {limits.header_timeout} s, "
                   f"no pause over {limits.body_timeout} s in the body)", "body"),
        413: _json(f"the request body is larger than the limit of {limits.max_body_bytes} bytes "
                   f"(images up to 10 MB, base64 in JSON adds a third)", "body"),
        414: _json("the request line is too long", None),
        431: _json("the request headers are too large", None),
        494: _json("the request headers are too large", None),
        404: _json("no such route: the API is POST /predictions/<endpoint> and GET /ping", None),
        502: _json("the inference server is not answering (starting or restarting); try again shortly", None),
        503: _json("the inference server is busy or its worker is restarting; retry in a few seconds", None),
        504: _json(f"the inference server did not answer within {limits.upstream_timeout} s", None),
        507: _json("the worker serving this request died and is restarting; retry in a few seconds", None),
    }


def _error_config(errors: Mapping[int, str]) -> tuple[str, str, str]:
    """nginx's ``error_page`` lines at server level and in the proxied location, and the internal locations
    that answer them."""
    # nginx's own errors, at server level (a malformed request never reaches a location) ...
    error_pages = "\n".join(f"        error_page {code} /_convlens_error/{code}.json;" for code in errors
                             if code not in UPSTREAM_ERRORS)
    # ... and in the proxied location, where TorchServe's 503/507 are rewritten too; the handlers'
    # own 4xx JSON (400, 404) passes through untouched.
    location_pages = "\n".join(f"            error_page {code} /_convlens_error/{code}.json;" for code in errors
                                if code not in PASSED_THROUGH)
    retry = {503: "add_header Retry-After 5 always; ", 507: "add_header Retry-After 5 always; "}
    error_locations = "\n".join(
        f"        location = /_convlens_error/{code}.json {{ internal; default_type application/json; "
        f"{retry.get(code, '')}return {code} {body}; }}" for code, body in errors.items())
    error_locations += "".join(
        f"\n        location = /_convlens_error/405-{method}.json {{ internal; default_type application/json; "
        f"add_header Allow {method} always; return 405 "
        f"{_json(f'method not allowed: only {method} is served here', None)}; }}" for _, method in ROUTES)
    return error_pages, location_pages, error_locations


def _key_config(api_key: str | None, upstream_key: str | None) -> tuple[str, str]:
    """The ``map`` that checks the client's key and the lines that check it and forward TorchServe's key."""
    key_map = key_check = ""
    if api_key is not None:
        key_map = (f'    map $http_authorization $convlens_key_ok {{\n        default 0;\n'
                   f'        "Bearer {api_key}" 1;\n    }}\n')
        key_check = ("            if ($convlens_key_ok = 0) { return 401; }\n"
                     f'            proxy_set_header Authorization "Bearer {upstream_key}";\n')
    return key_map, key_check


def _proxied_location(key_check: str, location_pages: str, limits: Limits) -> str:
    """The body of a location forwarded to TorchServe."""
    return f"""            # The whole body is read (within the limits above) before TorchServe sees the request.
{key_check}            proxy_intercept_errors on;
{location_pages}
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_http_version 1.1;
            proxy_set_header Connection close;
            proxy_connect_timeout 5s;
            proxy_send_timeout {limits.upstream_timeout}s;
            proxy_read_timeout {limits.upstream_timeout}s;
            proxy_pass http://torchserve;
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if Path(p).is_file()), None)


@dataclass
class Gate:
    url: str
    config: Path
    process: subprocess.Popen[bytes]
    limits: Limits
    log_file: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # nginx: graceful shutdown
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started the gate dies (no orphaned nginx holding the port)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2):  # noqa: S310 — the gate we started
            return True
    except urllib.error.HTTPError:
        return True  # nginx answered (TorchServe may want a token or still be starting)
    except OSError:
        return False


def start(run_dir: str | Path, listen: tuple[str, int], upstream_port: int, limits: Limits | None = None,
          log_file: Path | None = None, timeout: float = 20.0, api_key: str | None = None,
          upstream_key: str | None = None, detach: bool = False) -> Gate:
    """Start nginx in the foreground (a child of this process) and wait until it accepts connections.

    With ``detach`` it runs in a session of its own and outlives this process (``convlens serve start``);
    otherwise it is stopped when this process dies."""
    nginx = find_nginx()
    if nginx is None:
        raise GateError("nginx was not found: install it (Debian/Ubuntu: `apt-get install nginx-light`)")
    run_dir = Path(run_dir).resolve()
    limits = limits or Limits.from_env()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "gate-tmp" / sub).mkdir(parents=True, exist_ok=True)
    config = run_dir / "gate.conf"
    config.write_text(render(listen[0], listen[1], upstream_port, run_dir, limits, api_key, upstream_key))
    config.chmod(0o600)  # it may hold keys
    check = subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-p", str(run_dir), "-c", str(config)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise GateError(f"nginx rejected {config}: {check.stderr.strip()}")
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 — handed to the child
    try:
        proc = subprocess.Popen([nginx, "-e", "stderr", "-p", str(run_dir), "-c", str(config), "-g", "daemon off;"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=detach, preexec_fn=None if detach else _die_with_parent)
    finally:
        if out is not None:
            out.close()
    host = "127.0.0.1" if listen[0] in ("0.0.0.0", "*") else listen[0]
    gate = Gate(f"http://{host}:{listen[1]}", config, proc, limits, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GateError(f"nginx exited with {proc.returncode} during start"
                            + (f"; see {log_file}" if log_file else ""))
        if _answers(gate.url):
            return gate
        time.sleep(0.1)
    gate.stop()
    raise GateError(f"nginx did not accept connections on {gate.url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.gate", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("render",))
    parser.add_argument("--listen", default="0.0.0.0:8080")
    parser.add_argument("--upstream-port", type=int, default=8085)
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/convlens-gate"))
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    print(render(host or "0.0.0.0", int(port), args.upstream_port, args.run_dir, Limits.from_env()), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
