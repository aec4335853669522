"""The ``convlens`` command: the API commands live here, everything else in :mod:`convlens.cli`.

    convlens call TECHNIQUE [IMAGE ...]   one request to the running API; images as PNG, a summary (--json: all)
    convlens serve start|stop|status      the API in the background: TorchServe behind its gate (serve/local.py)
    convlens job status|wait|cancel ID    a long job of the API (``call --background`` starts one; ``wait``
                                          prints its answer as ``call`` does)

``call`` and ``serve`` import neither torch nor the core's techniques: they answer in the time of the
request (the other commands are delegated to :func:`convlens.cli.main`, which needs torch).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convlens.output_lines import response_text
from convlens.outputs import Outputs
from convlens.schema import INFO_ENDPOINT, METHOD_PARAM, SALIENCY_ENDPOINT, route

API_COMMANDS = ("call", "serve", "job")
PORTS = (("inference", "CONVLENS_INFERENCE_PORT", 8080), ("management", "CONVLENS_MANAGEMENT_PORT", 8081),
         ("metrics", "CONVLENS_METRICS_PORT", 8082), ("grpc-inference", "CONVLENS_GRPC_INFERENCE_PORT", 7070),
         ("grpc-management", "CONVLENS_GRPC_MANAGEMENT_PORT", 7071))


def _server_info_lines(running: Any) -> list[str]:
    """What ``serve start`` and ``serve status`` print about a :class:`serve.local.Running`."""
    info, url = running.server, running.url
    key_file = info.key_file
    gate = (f"gate:           nginx (serve/gate.py) in front of TorchServe on {info.inference_url}; "
            f"log {info.run_dir / 'gate.log'}" if running.gate_url else
            "gate:           none (--no-gate): no read timeouts, empty 413s; not how it is deployed")
    return [
        f"ConvLens API:   {url}/predictions/<endpoint>  (`convlens call --list` lists them)",
        gate,
        f"management:     {info.management_url}" + ("" if running.gate_url else f"   metrics: {info.metrics_url}"),
        f"inference key:  {key_file}  (`convlens call` and the dashboard read it)",
        f"  export CONVLENS_KEY_FILE={key_file} CONVLENS_URL={url}",
        f"  TOKEN=$(python3 -c \"import json; print(json.load(open('{key_file}'))['inference']['key'])\")",
        f"  curl -H \"Authorization: Bearer $TOKEN\" -F image=@cat.jpg {url}/predictions/{SALIENCY_ENDPOINT}",
        f"log:            {info.log_file} (and {info.run_dir / 'logs'}/)",
    ]


def cmd_serve_start(args: argparse.Namespace) -> int:
    from serve.gate import GateError
    from serve.local import start
    from serve.server import MODEL_UPLOAD_ENV, Ports, ServerError, all_endpoints, local_dev_env

    try:
        ports = Ports.resolve(inference=args.inference_port, management=args.management_port,
                              metrics=args.metrics_port, grpc_inference=args.grpc_inference_port,
                              grpc_management=args.grpc_management_port)
        dev = local_dev_env()  # local development: e.g. models may be added over the API
        unknown = sorted(set(args.endpoint) - set(all_endpoints()))
        if unknown:
            raise ServerError(f"unknown endpoint {', '.join(unknown)}; there are: {', '.join(all_endpoints())}")
        running = start(args.run_dir, ports, gated=not args.no_gate, upstream=args.upstream_port,
                        endpoints=tuple(args.endpoint) or None, rebuild=args.rebuild, timeout=args.timeout, env=dev,
                        log=lambda line: print(f"archive {line}", file=sys.stderr))
    except (ServerError, GateError) as exc:
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1
    info = running.server
    print(f"TorchServe {'is ' + info.detail if info.detail.startswith('already') else 'started'} "
          f"(pid {info.pid}, run directory {info.run_dir})")
    print("\n".join(_server_info_lines(running)))
    upload = {**os.environ, **dev}.get(MODEL_UPLOAD_ENV, "")
    if not info.detail.startswith("already"):
        print(f"model upload:   {'on' if upload.strip().lower() in ('1', 'true') else 'off'} over the API "
              f"({MODEL_UPLOAD_ENV}={upload!r}; docs/models.md)")
    print("stop it with: convlens serve stop")
    return 0


def cmd_serve_stop(args: argparse.Namespace) -> int:
    from serve.local import stop
    from serve.server import run_dir_path

    gate_stopped, stopped = stop(args.run_dir)
    print(f"TorchServe {'stopped' if stopped else 'was not running'}"
          f"{', its gate stopped' if gate_stopped else ''} ({run_dir_path(args.run_dir)})")
    return 0


def cmd_serve_status(args: argparse.Namespace) -> int:
    from serve.local import status

    running = status(args.run_dir)
    info = running.server
    if not info.running:
        print(f"TorchServe is not running ({info.run_dir}); start it with: convlens serve start")
        return 3
    gate = "" if running.gate_url is None else (" behind its gate" if running.gate_running else
                                                 "; its gate is NOT running (convlens serve stop, then start)")
    print(f"TorchServe is running (pid {info.pid}){gate}: {'healthy' if running.healthy else info.detail}")
    print("\n".join(_server_info_lines(running)))
    return 0 if running.healthy else 1


def _route(name: str, techniques: Sequence[Any]) -> tuple[str, dict[str, Any], Any]:
    """A technique or endpoint name → (endpoint, params it implies, the technique it runs or None). A technique
    is asked for by :func:`convlens.schema.route`; an endpoint runs its default technique."""
    for t in techniques:
        if t.name == name:
            return (*route(t.name, t.endpoint), t)
    for t in techniques:
        if t.endpoint == name:
            return name, {}, t
    if name == INFO_ENDPOINT:  # a server whose catalogue does not list the technique behind its info endpoint
        return name, {}, None
    known = sorted({INFO_ENDPOINT, *(t.name for t in techniques), *(t.endpoint for t in techniques)})
    raise ValueError(f"unknown technique or endpoint {name!r}; the server offers: {', '.join(known)}")


def _print_progress(progress: Any) -> None:
    print(f"{progress.step}/{progress.total}", file=sys.stderr, flush=True)


def cmd_call(args: argparse.Namespace) -> int:
    from client.http import ApiError, ConvLensClient, default_key_file, default_url, read_token
    from convlens.schema import parse_assignment, target_from_text

    token = read_token(args.key_file)
    if token is None:
        print(f"convlens: warning: no inference key found ({args.key_file or default_key_file()}); "
              "is the server running (`convlens serve start`)? Set CONVLENS_KEY_FILE or CONVLENS_TOKEN.",
              file=sys.stderr)
    try:
        given = dict(parse_assignment(item) for item in args.param)
    except ValueError as exc:
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 2
    client = ConvLensClient(args.url or default_url(), token=token, timeout=args.timeout)
    try:
        techniques = client.techniques()
        if args.list or args.technique is None:
            for t in techniques:
                print(f"{t.name:14s} {t.family:12s} /predictions/{t.endpoint:12s} {t.title}")
            return 0
        endpoint, params, spec = _route(args.technique, techniques)
        params.update(given)
        if args.method:
            params[METHOD_PARAM] = args.method
        spec = next((t for t in techniques if t.name == params.get(METHOD_PARAM)), spec)
        images = _read_images(args.images, spec, args.technique)
        target = target_from_text(args.target, client.classes(args.model)) if args.target is not None else None
        if args.background:  # a job: its id at once; `convlens job wait ID` fetches the answer
            body = {**{k: ([base64.b64encode(d).decode("ascii") for d in v] if isinstance(v, list)
                           else base64.b64encode(v).decode("ascii")) for k, v in images.items()},
                    "model": args.model, "target": target, "layer": args.layer, "params": params}
            print(json.dumps({"job": client.submit(endpoint, body)}))
            return 0
        if spec is not None and spec.family == "synthesis":  # streamed: its progress on stderr
            data = client.synthesis(endpoint, images, model=args.model, target=target, layer=args.layer,
                                    params=params, on_progress=_print_progress).to_json()
        else:
            data = client.request(endpoint, images, model=args.model, target=target, layer=args.layer,
                                  params=params, weights=args.weights)
    except ApiError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        print(f"convlens: error: {'HTTP ' + str(exc.status) if exc.status else 'no answer'}: {exc.message}{where}",
              file=sys.stderr)
        return 1
    ran = next((t for t in techniques if t.name == data.get("technique")), spec)  # an endpoint's default technique
    _print_answer(data, ran, Path(args.out), args.json)
    return 0


def _read_images(paths: Sequence[str], spec: Any, technique: str) -> dict[str, Any]:
    """The command line's image files → the technique's named inputs (a list for a batch input)."""
    from convlens.schema import BATCH_INPUT, assign_inputs

    takes, optional = (spec.inputs, spec.optional_inputs) if spec is not None else (("image",), ())
    if takes == (BATCH_INPUT,):  # a batch: every IMAGE given
        if not paths:
            raise ValueError(f"{technique} takes IMAGE [IMAGE ...]; got none")
        return {BATCH_INPUT: [Path(path).read_bytes() for path in paths]}
    named = assign_inputs(paths, takes, optional, technique)
    return {name: Path(path).read_bytes() for name, path in named.items()}


def _print_answer(data: dict[str, Any], ran: Any, out: Path, as_json: bool) -> None:
    """Images written as ``NAME.png`` under ``out`` (their declared names), then on stdout a summary by the
    outputs the technique ``ran`` (a ``TechniqueInfo`` or None) declares or, ``as_json``, the whole answer (file
    paths for images)."""
    from convlens.registry import FAMILY_OUTPUTS  # torch-free: the family's common outputs, shown last

    declared = ran.outputs if ran is not None else Outputs()
    common = FAMILY_OUTPUTS.get(ran.family, Outputs()) if ran is not None else Outputs()
    written = {}
    if data.get("images"):
        out.mkdir(parents=True, exist_ok=True)
    for name, b64 in (data.get("images") or {}).items():
        path = out / f"{name}.png"
        path.write_bytes(base64.b64decode(b64))
        written[name] = str(path)
    print(response_text(declared, {**data, "images": written} if "images" in data else data, as_json, common))


def _print_job(status: Any) -> None:
    print(f"{status.state} {status.step}/{status.total}", file=sys.stderr, flush=True)


def cmd_job(args: argparse.Namespace) -> int:
    from client.http import ApiError, ConvLensClient, default_url, read_token

    client = ConvLensClient(args.url or default_url(), token=read_token(args.key_file))
    try:
        if args.action == "cancel":
            cancelled = client.cancel(args.id)
            print(json.dumps({"job": args.id, "cancelled": cancelled}))
            return 0 if cancelled else 3
        if args.action == "status":
            print(json.dumps(dataclasses.asdict(client.job_status(args.id)), indent=2))
            return 0
        answer = client.wait(args.id, _print_job, timeout=args.timeout)
        _print_answer(answer, _technique(client, answer.get("technique")), Path(args.out), args.json)
        return 0
    except ApiError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        print(f"convlens: error: {'HTTP ' + str(exc.status) if exc.status else 'no answer'}: {exc.message}{where}",
              file=sys.stderr)
        return 1


def _technique(client: Any, name: Any) -> Any:
    """The server's ``TechniqueInfo`` of ``name`` (None when it is unnamed or the catalogue cannot be read: the
    answer is then printed without captions)."""
    from client.http import ApiError

    if not name:
        return None
    try:
        return next((t for t in client.techniques() if t.name == name), None)
    except ApiError:
        return None


def add_job_command(sub: Any) -> None:
    job = sub.add_parser("job", help="a long job of the API: status, wait for its answer, cancel")
    job.add_argument("action", choices=("status", "wait", "cancel"))
    job.add_argument("id", help="the job id (`call --background` prints it)")
    job.add_argument("--timeout", type=float, help="wait: cancel the job after this many seconds")
    job.add_argument("--out", default="out/call", help="wait: where the answer's NAME.png files are written")
    job.add_argument("--json", action="store_true", help="wait: print the whole answer as JSON, not a summary")
    job.add_argument("--url", help="default $CONVLENS_URL or http://127.0.0.1:$CONVLENS_INFERENCE_PORT")
    job.add_argument("--key-file", help="TorchServe's key_file.json (default $CONVLENS_KEY_FILE or serve/run)")
    job.set_defaults(func=cmd_job)


def add_api_commands(sub: Any) -> None:
    """``call`` and ``serve`` subcommands (also added to the full ``convlens --help``)."""
    serve = sub.add_parser("serve", help="the TorchServe API in the background").add_subparsers(
        dest="action", required=True)
    for action, func, text in (("start", cmd_serve_start, "build stale archives, start TorchServe and its gate "
                                                          "(nginx) in front, wait for /ping"),
                               ("stop", cmd_serve_stop, "stop the server (and its gate) of the run directory"),
                               ("status", cmd_serve_status, "running? healthy? where is the key file?")):
        p = serve.add_parser(action, help=text)
        p.add_argument("--run-dir", help="config, archives, key file and logs (default: serve/run or "
                                         "$CONVLENS_RUN_DIR)")
        p.set_defaults(func=func)
        if action == "start":
            for port, env, default in PORTS:
                p.add_argument(f"--{port}-port", type=int, help=f"default ${env} or {default}")
            p.add_argument("--rebuild", action="store_true", help="rebuild the model archives even if fresh")
            p.add_argument("--no-gate", action="store_true", help="bare TorchServe on the inference port, without "
                                                                  "the gate's timeouts and JSON errors (tests)")
            p.add_argument("--upstream-port", type=int, help="TorchServe's private port behind the gate (default "
                                                              "$CONVLENS_UPSTREAM_PORT or a free one)")
            p.add_argument("--endpoint", action="append", default=[], help="serve only this endpoint (repeat; "
                                                                            "default: all)")
            p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the API")

    call = sub.add_parser("call", help="one request to the running API; writes PNGs, prints a summary")
    call.add_argument("technique", nargs="?", help="a technique or an endpoint (its default technique); `--list` "
                                                   "shows what the server offers")
    call.add_argument("images", nargs="*", metavar="IMAGE", help="the technique's images, in order")
    call.add_argument("--list", action="store_true", help="list the server's techniques and endpoints")
    call.add_argument("--model", default="builtin")
    call.add_argument("--target", help="class index or class label (e.g. 3 or circle)")
    call.add_argument("--layer")
    call.add_argument("--method", help=f"shorthand for --param {METHOD_PARAM}=M")
    call.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="params entry, the value parsed as JSON when it is (e.g. alpha=0.3, topk=3)")
    call.add_argument("--weights", choices=("pretrained", "random"), help="random: ask for an untrained network")
    call.add_argument("--out", default="out/call", help="where NAME.png files are written")
    call.add_argument("--json", action="store_true", help="print the whole answer as JSON (image paths, every "
                                                          "scalar, series and item) instead of a summary")
    call.add_argument("--url", help="default $CONVLENS_URL or http://127.0.0.1:$CONVLENS_INFERENCE_PORT")
    call.add_argument("--key-file", help="TorchServe's key_file.json (default $CONVLENS_KEY_FILE or serve/run)")
    call.add_argument("--timeout", type=float, default=300.0)
    call.add_argument("--background", action="store_true", help="run it as a job: print its id at once "
                                                                "(then `convlens job wait|status|cancel ID`)")
    call.set_defaults(func=cmd_call)
    add_job_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in API_COMMANDS:
        parser = argparse.ArgumentParser(prog="convlens")
        add_api_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        try:
            return int(args.func(args))
        except (FileNotFoundError, ValueError) as exc:
            print(f"convlens: error: {exc}", file=sys.stderr)
            return 1
    from convlens import cli  # the core's commands (they need torch)

    return cli.main(argv, extend=add_api_commands)


if __name__ == "__main__":
    raise SystemExit(main())
