"""The ``convlens`` command: the API commands live here, everything else in :mod:`convlens.cli`.

    convlens call TECHNIQUE [IMAGE ...]   one request to the running API; JSON on stdout, images as PNG
    convlens serve start|stop|status      the TorchServe API (serve/server.py) in the background

``call`` and ``serve`` import neither torch nor the core's techniques: they answer in the time of the
request (the other commands are delegated to :func:`convlens.cli.main`, which needs torch).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

API_COMMANDS = ("call", "serve")
PORTS = (("inference", "CONVLENS_INFERENCE_PORT", 8080), ("management", "CONVLENS_MANAGEMENT_PORT", 8081),
         ("metrics", "CONVLENS_METRICS_PORT", 8082), ("grpc-inference", "CONVLENS_GRPC_INFERENCE_PORT", 7070),
         ("grpc-management", "CONVLENS_GRPC_MANAGEMENT_PORT", 7071))


def _server_info_lines(info: Any) -> list[str]:
    key_file = info.key_file
    return [
        f"ConvLens API:   {info.inference_url}/predictions/<endpoint>  (`convlens call --list` lists them)",
        f"management:     {info.management_url}   metrics: {info.metrics_url}",
        f"inference key:  {key_file}  (`convlens call` and the dashboard read it)",
        f"  export CONVLENS_KEY_FILE={key_file} CONVLENS_URL={info.inference_url}",
        f"  TOKEN=$(python3 -c \"import json; print(json.load(open('{key_file}'))['inference']['key'])\")",
        f"  curl -H \"Authorization: Bearer $TOKEN\" -F image=@cat.jpg -F method=gradcam "
        f"{info.inference_url}/predictions/saliency",
        f"log:            {info.log_file} (and {info.run_dir / 'logs'}/)",
    ]


def cmd_serve_start(args: argparse.Namespace) -> int:
    from serve.server import MODEL_UPLOAD_ENV, Ports, ServerError, local_dev_env, start

    try:
        ports = Ports.resolve(inference=args.inference_port, management=args.management_port,
                              metrics=args.metrics_port, grpc_inference=args.grpc_inference_port,
                              grpc_management=args.grpc_management_port)
        dev = local_dev_env()  # local development: e.g. models may be added over the API
        info = start(args.run_dir, ports, rebuild=args.rebuild, timeout=args.timeout, env=dev,
                     log=lambda line: print(f"archive {line}", file=sys.stderr))
    except ServerError as exc:
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1
    print(f"TorchServe {'is ' + info.detail if info.detail.startswith('already') else 'started'} "
          f"(pid {info.pid}, run directory {info.run_dir})")
    print("\n".join(_server_info_lines(info)))
    upload = {**os.environ, **dev}.get(MODEL_UPLOAD_ENV, "")
    if not info.detail.startswith("already"):
        print(f"model upload:   {'on' if upload.strip().lower() in ('1', 'true') else 'off'} over the API "
              f"({MODEL_UPLOAD_ENV}={upload!r}; docs/models.md)")
    print("stop it with: convlens serve stop")
    return 0


def cmd_serve_stop(args: argparse.Namespace) -> int:
    from serve.server import run_dir_path, stop

    stopped = stop(args.run_dir)
    print(f"TorchServe {'stopped' if stopped else 'was not running'} ({run_dir_path(args.run_dir)})")
    return 0


def cmd_serve_status(args: argparse.Namespace) -> int:
    from serve.server import status

    info = status(args.run_dir)
    if not info.running:
        print(f"TorchServe is not running ({info.run_dir}); start it with: convlens serve start")
        return 3
    print(f"TorchServe is running (pid {info.pid}): {'healthy' if info.healthy else info.detail}")
    print("\n".join(_server_info_lines(info)))
    return 0 if info.healthy else 1


def _route(name: str, techniques: Sequence[Any]) -> tuple[str, dict[str, Any], Any]:
    """A technique or endpoint name → (endpoint, params it implies, the technique it runs or None)."""
    for t in techniques:
        if t.name == name:
            shared = sum(1 for u in techniques if u.endpoint == t.endpoint) > 1
            return t.endpoint, ({"method": name} if shared else {}), t
    for t in techniques:
        if t.endpoint == name:
            return name, {}, t
    if name == "classify":
        return name, {}, None
    known = sorted({"classify", *(t.name for t in techniques), *(t.endpoint for t in techniques)})
    raise ValueError(f"unknown technique or endpoint {name!r}; the server offers: {', '.join(known)}")


def _print_progress(progress: Any) -> None:
    print(f"{progress.step}/{progress.total}", file=sys.stderr, flush=True)


def cmd_call(args: argparse.Namespace) -> int:
    from client.http import ApiError, ConvLensClient, default_key_file, default_url, read_token
    from convlens.schema import BATCH_INPUT, assign_inputs, parse_assignment, target_from_text

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
            params["method"] = args.method
            spec = next((t for t in techniques if t.name == args.method), spec)
        takes, optional = (spec.inputs, spec.optional_inputs) if spec is not None else (("image",), ())
        images: dict[str, Any]
        if takes == (BATCH_INPUT,):  # a batch: every IMAGE given
            if not args.images:
                raise ValueError(f"{args.technique} takes IMAGE [IMAGE ...]; got none")
            images = {BATCH_INPUT: [Path(path).read_bytes() for path in args.images]}
        else:
            paths = assign_inputs(args.images, takes, optional, args.technique)
            images = {name: Path(path).read_bytes() for name, path in paths.items()}
        target = target_from_text(args.target, client.classes(args.model)) if args.target is not None else None
        if spec is not None and spec.family == "synthesis":
            data = client.synthesis(f"{endpoint}:{params.pop('method', '')}", images, model=args.model,
                                    target=target, layer=args.layer, params=params,
                                    on_progress=_print_progress).to_json()
        else:
            data = client.request(endpoint, images, model=args.model, target=target, layer=args.layer,
                                  params=params, weights=args.weights)
    except ApiError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        print(f"convlens: error: {'HTTP ' + str(exc.status) if exc.status else 'no answer'}: {exc.message}{where}",
              file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, b64 in data.get("images", {}).items():
        path = out / f"{name}.png"
        path.write_bytes(base64.b64decode(b64))
        written[name] = str(path)
    data["images"] = written
    print(json.dumps(data, indent=2))
    return 0


def add_api_commands(sub: Any) -> None:
    """``call`` and ``serve`` subcommands (also added to the full ``convlens --help``)."""
    serve = sub.add_parser("serve", help="the TorchServe API in the background").add_subparsers(
        dest="action", required=True)
    for action, func, text in (("start", cmd_serve_start, "build stale archives, start TorchServe, wait for /ping"),
                               ("stop", cmd_serve_stop, "stop the server of the run directory"),
                               ("status", cmd_serve_status, "running? healthy? where is the key file?")):
        p = serve.add_parser(action, help=text)
        p.add_argument("--run-dir", help="config, archives, key file and logs (default: serve/run or "
                                         "$CONVLENS_RUN_DIR)")
        p.set_defaults(func=func)
        if action == "start":
            for port, env, default in PORTS:
                p.add_argument(f"--{port}-port", type=int, help=f"default ${env} or {default}")
            p.add_argument("--rebuild", action="store_true", help="rebuild the model archives even if fresh")
            p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the API")

    call = sub.add_parser("call", help="one request to the running API; prints JSON, writes PNGs")
    call.add_argument("technique", nargs="?", help="a technique (gradcam, occlusion, filters, ...) or an endpoint "
                                                   "(classify, saliency); `--list` shows what the server offers")
    call.add_argument("images", nargs="*", metavar="IMAGE", help="the technique's images, in order")
    call.add_argument("--list", action="store_true", help="list the server's techniques and endpoints")
    call.add_argument("--model", default="builtin")
    call.add_argument("--target", help="class index or class label (e.g. 3 or circle)")
    call.add_argument("--layer")
    call.add_argument("--method", help="shorthand for --param method=M")
    call.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="params entry, the value parsed as JSON when it is (e.g. alpha=0.3, topk=3)")
    call.add_argument("--weights", choices=("pretrained", "random"), help="random: ask for an untrained network")
    call.add_argument("--out", default="out/call", help="where NAME.png files are written")
    call.add_argument("--url", help="default $CONVLENS_URL or http://127.0.0.1:$CONVLENS_INFERENCE_PORT")
    call.add_argument("--key-file", help="TorchServe's key_file.json (default $CONVLENS_KEY_FILE or serve/run)")
    call.add_argument("--timeout", type=float, default=300.0)
    call.set_defaults(func=cmd_call)


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
