"""``convlens`` — the product's command line.

    convlens models                       the zoo and where each model's weights are
    convlens layers MODEL [--random]      layer catalogue: shape, receptive field, stride
    convlens builtin train|eval|sample    the built-in offline model
    convlens weights fetch [MODEL...]     download ImageNet weights (needs internet)
    convlens faithfulness --method M      pointing game on the built-in dataset
    convlens explain IMAGE --method M     one image explained locally, maps written as PNG
    convlens demo --out DIR               every method on built-in samples, as one contact sheet
    convlens serve start|stop|status      the TorchServe API (serve/server.py) in the background
    convlens call ENDPOINT IMAGE          one request to the running API; images written as PNG
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _progress(prefix: str, every: int = 1):  # type: ignore[no-untyped-def]
    def report(step: int, total: int, info: dict[str, float] | None = None) -> None:
        if step % every == 0 or step == total:
            extra = " ".join(f"{k}={v:.4g}" for k, v in (info or {}).items())
            print(f"{prefix} {step}/{total} {extra}".rstrip(), file=sys.stderr, flush=True)

    return report


def cmd_models(args: argparse.Namespace) -> int:
    from convlens.models import REGISTRY, find_weights

    for name, spec in REGISTRY.items():
        path = find_weights(name)
        status = f"weights: {path}" if path else f"weights missing (expected {spec.weights_file})"
        print(f"{name:14s} {spec.description}\n{'':14s} {status}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from convlens.models import load_model

    loaded = load_model(args.model, weights="random" if args.random else "pretrained")
    print(f"# {loaded.name} ({loaded.weights} weights), input {loaded.preprocessing.input_size} px; "
          f"default Grad-CAM layer: {loaded.default_cam_layer}")
    print(f"{'layer':32s} {'type':20s} {'output':>18s} {'RF':>6s} {'stride':>6s}")
    for row in loaded.layers:
        shape = "x".join(str(s) for s in row.output_shape)
        print(f"{row.name:32s} {row.kind:20s} {shape:>18s} {row.receptive_field:6d} {row.stride:6d}")
    return 0


def cmd_builtin_train(args: argparse.Namespace) -> int:
    import dataclasses

    from convlens.builtin.train import CHECKPOINT_PATH, TrainConfig, evaluate, save_checkpoint, train

    overrides = {k: v for k, v in {"epochs": args.epochs, "n_train": args.n_train, "seed": args.seed}.items()
                 if v is not None}
    config = dataclasses.replace(TrainConfig(), **overrides)
    started = time.perf_counter()
    model, _history = train(config, callback=_progress("train step", every=50))
    minutes = (time.perf_counter() - started) / 60
    accuracy = evaluate(model)
    out = Path(args.out) if args.out else CHECKPOINT_PATH
    save_checkpoint(model, out, {"heldout_accuracy": accuracy, "train_minutes": round(minutes, 2),
                                 "train_config": dataclasses.asdict(config)})
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min")
    print(f"accuracy={accuracy:.4f}")
    return 0


def cmd_builtin_eval(args: argparse.Namespace) -> int:
    from convlens.builtin.train import CHECKPOINT_PATH, evaluate, load_checkpoint

    model, _meta = load_checkpoint(Path(args.checkpoint) if args.checkpoint else CHECKPOINT_PATH)
    accuracy = evaluate(model, seed=args.seed, n=args.n)
    print(f"held-out seed {args.seed}, {args.n} images")
    print(f"accuracy={accuracy:.4f}")
    return 0


def cmd_builtin_sample(args: argparse.Namespace) -> int:
    from convlens.builtin.train import write_samples

    paths = write_samples(Path(args.out), args.n, seed=args.seed)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from convlens.models import REGISTRY, fetch_weights

    names = args.models or [n for n in REGISTRY if n != "builtin"]
    failed = 0
    for name in names:
        if name not in REGISTRY:
            print(f"unknown model {name!r}; known: {', '.join(REGISTRY)}", file=sys.stderr)
            return 2
        try:
            print(f"{name}: {fetch_weights(name)}")
        except Exception as exc:  # noqa: BLE001 — report every model, then fail
            failed += 1
            print(f"{name}: could not fetch ({exc})", file=sys.stderr)
    return 1 if failed else 0


def cmd_weights_list(args: argparse.Namespace) -> int:
    from convlens.models import REGISTRY, find_weights, weights_search_paths

    for name in REGISTRY:
        path = find_weights(name)
        print(f"{name:14s} {'ok     ' + str(path) if path else 'missing ' + str(weights_search_paths(name)[-1])}")
    return 0


def cmd_faithfulness(args: argparse.Namespace) -> int:
    from convlens.faithfulness import pointing_game
    from convlens.models import load_model

    loaded = load_model("builtin")
    params = {"layer": args.layer} if args.layer else {}
    result = pointing_game(loaded, args.method, n=args.n, seed=args.seed, tolerance=args.tolerance,
                           params=params, callback=_progress("images"))
    print(f"method={args.method} n={args.n} seed={args.seed} tolerance={args.tolerance} "
          f"model_accuracy={result.accuracy:.3f}")
    print(f"pointing_game={result.score:.4f}")
    return 0


def _write_explanation(explanation, out: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    from convlens.images import encode_png

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in explanation.images.items():
        path = out / f"{explanation.method}_{name}.png"
        path.write_bytes(encode_png(image))
        written.append(path)
    return written


def cmd_explain(args: argparse.Namespace) -> int:
    from convlens.explain import TECHNIQUES, explain
    from convlens.images import decode_image
    from convlens.models import load_model

    loaded = load_model(args.model, weights="random" if args.random else "pretrained")
    img = decode_image(Path(args.image).read_bytes())
    methods = list(TECHNIQUES) if args.method == "all" else [args.method]
    for method in methods:
        e = explain(loaded, img, method, target=args.target, layer=args.layer)
        top = ", ".join(f"{label} {p:.1%}" for _i, label, p in e.topk)
        print(f"{method}: model={e.model} weights={e.weights} target={e.target} ({e.target_label}) "
              f"layer={e.layer} top: {top}")
        for path in _write_explanation(e, Path(args.out)):
            print(f"  wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from convlens.builtin.dataset import CLASSES, HELDOUT_SEED, render_sample
    from convlens.explain import TECHNIQUES, explain
    from convlens.images import encode_png, grid
    from convlens.models import load_model

    loaded = load_model("builtin")
    tiles = []
    for label in range(len(CLASSES)):
        sample = render_sample(HELDOUT_SEED, label)
        img = Image.fromarray(sample.image)
        row = [torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255]
        for method in TECHNIQUES:
            e = explain(loaded, img, method)
            row.append(e.images["overlay"])
        tiles.extend(row)
        print(f"{CLASSES[label]:20s} predicted {e.target_label} ({e.topk[0][2]:.1%})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "attribution_sheet.png"
    sheet.write_bytes(encode_png(grid(tiles, columns=1 + len(TECHNIQUES))))
    print(f"columns: input, {', '.join(t.title for t in TECHNIQUES.values())}")
    print(f"wrote {sheet}")
    return 0


def _server_info_lines(info) -> list[str]:  # type: ignore[no-untyped-def]
    key_file = info.key_file
    return [
        f"ConvLens API:   {info.inference_url}/predictions/{{classify,saliency}}",
        f"management:     {info.management_url}   metrics: {info.metrics_url}",
        f"inference key:  {key_file}  (`convlens call` and the dashboard read it)",
        f"  export CONVLENS_KEY_FILE={key_file} CONVLENS_URL={info.inference_url}",
        f"  TOKEN=$(python3 -c \"import json; print(json.load(open('{key_file}'))['inference']['key'])\")",
        f"  curl -H \"Authorization: Bearer $TOKEN\" -F image=@cat.jpg -F method=gradcam "
        f"{info.inference_url}/predictions/saliency",
        f"log:            {info.log_file} (and {info.run_dir / 'logs'}/)",
    ]


def _serve_ports(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from serve.server import Ports

    return Ports.resolve(inference=args.inference_port, management=args.management_port,
                         metrics=args.metrics_port, grpc_inference=args.grpc_inference_port,
                         grpc_management=args.grpc_management_port)


def cmd_serve_start(args: argparse.Namespace) -> int:
    from serve.server import ServerError, start

    try:
        info = start(args.run_dir, _serve_ports(args), rebuild=args.rebuild, timeout=args.timeout,
                     log=lambda line: print(f"archive {line}", file=sys.stderr))
    except ServerError as exc:
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1
    print(f"TorchServe {'is ' + info.detail if info.detail.startswith('already') else 'started'} "
          f"(pid {info.pid}, run directory {info.run_dir})")
    print("\n".join(_server_info_lines(info)))
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


def _param_value(text: str):  # type: ignore[no-untyped-def]
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_call(args: argparse.Namespace) -> int:
    import json

    from client.http import ApiError, ConvLensClient, default_key_file, default_url, read_token

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"convlens: error: --param expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        params[key] = _param_value(value)
    if args.method:
        params["method"] = args.method
    image = Path(args.image).read_bytes()
    token = read_token(args.key_file)
    if token is None:
        print(f"convlens: warning: no inference key found ({args.key_file or default_key_file()}); "
              "is the server running (`convlens serve start`)? Set CONVLENS_KEY_FILE or CONVLENS_TOKEN.",
              file=sys.stderr)
    client = ConvLensClient(args.url or default_url(), token=token, timeout=args.timeout)
    try:
        response = client.explain(args.endpoint, image, model=args.model, target=args.target, layer=args.layer,
                                  params=params, weights=args.weights)
    except ApiError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        print(f"convlens: error: {'HTTP ' + str(exc.status) if exc.status else 'no answer'}: {exc.message}{where}",
              file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = response.to_json()
    written = {}
    for name, png in _decoded_images(data["images"]).items():
        path = out / f"{name}.png"
        path.write_bytes(png)
        written[name] = str(path)
    data["images"] = written
    print(json.dumps(data, indent=2))
    return 0


def _decoded_images(images: dict[str, str]) -> dict[str, bytes]:
    import base64

    return {name: base64.b64decode(value) for name, value in images.items()}


def build_parser() -> argparse.ArgumentParser:
    from convlens.builtin.dataset import HELDOUT_SEED
    from convlens.explain import TECHNIQUES
    from convlens.schema import MODEL_NAMES

    parser = argparse.ArgumentParser(prog="convlens", description="What a CNN has learned, and why it decides.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the model zoo and weight status").set_defaults(func=cmd_models)

    layers = sub.add_parser("layers", help="layer catalogue of a model")
    layers.add_argument("model", choices=MODEL_NAMES)
    layers.add_argument("--random", action="store_true", help="random weights (no pretrained file needed)")
    layers.set_defaults(func=cmd_layers)

    builtin = sub.add_parser("builtin", help="the built-in offline model").add_subparsers(dest="action", required=True)
    train = builtin.add_parser("train", help="train the built-in model and save the checkpoint")
    train.add_argument("--out", help="checkpoint path (default: the committed one)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--n-train", type=int)
    train.add_argument("--seed", type=int)
    train.set_defaults(func=cmd_builtin_train)
    ev = builtin.add_parser("eval", help="held-out accuracy; last line accuracy=...")
    ev.add_argument("--checkpoint")
    ev.add_argument("--seed", type=int, default=HELDOUT_SEED)
    ev.add_argument("--n", type=int, default=2000)
    ev.set_defaults(func=cmd_builtin_eval)
    sample = builtin.add_parser("sample", help="write dataset images and masks")
    sample.add_argument("--n", type=int, default=20)
    sample.add_argument("--out", required=True)
    sample.add_argument("--seed", type=int, default=HELDOUT_SEED)
    sample.set_defaults(func=cmd_builtin_sample)

    weights = sub.add_parser("weights", help="ImageNet weights").add_subparsers(dest="action", required=True)
    fetch = weights.add_parser("fetch", help="download into the torch hub cache (needs internet)")
    fetch.add_argument("models", nargs="*", metavar="MODEL")
    fetch.set_defaults(func=cmd_weights_fetch)
    weights.add_parser("list", help="where each model's weights are").set_defaults(func=cmd_weights_list)

    faith = sub.add_parser("faithfulness", help="pointing game on held-out built-in images")
    faith.add_argument("--method", choices=tuple(TECHNIQUES), required=True)
    faith.add_argument("--n", type=int, default=200)
    faith.add_argument("--seed", type=int, default=HELDOUT_SEED)
    faith.add_argument("--tolerance", type=int, default=0, help="pixels of slack around the mask")
    faith.add_argument("--layer", help="layer for gradcam / guided neuron objective")
    faith.set_defaults(func=cmd_faithfulness)

    ex = sub.add_parser("explain", help="explain one image locally (no server)")
    ex.add_argument("image")
    ex.add_argument("--model", choices=MODEL_NAMES, default="builtin")
    ex.add_argument("--method", choices=(*TECHNIQUES, "all"), default="all")
    ex.add_argument("--target", type=int)
    ex.add_argument("--layer")
    ex.add_argument("--random", action="store_true", help="random weights, explicitly")
    ex.add_argument("--out", default="out/explain")
    ex.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="every method on built-in samples, one contact sheet")
    demo.add_argument("--out", default="out/demo")
    demo.set_defaults(func=cmd_demo)

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
            for port, env, default in (("inference", "CONVLENS_INFERENCE_PORT", 8080),
                                       ("management", "CONVLENS_MANAGEMENT_PORT", 8081),
                                       ("metrics", "CONVLENS_METRICS_PORT", 8082),
                                       ("grpc-inference", "CONVLENS_GRPC_INFERENCE_PORT", 7070),
                                       ("grpc-management", "CONVLENS_GRPC_MANAGEMENT_PORT", 7071)):
                p.add_argument(f"--{port}-port", type=int, help=f"default ${env} or {default}")
            p.add_argument("--rebuild", action="store_true", help="rebuild the model archives even if fresh")
            p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the API")

    call = sub.add_parser("call", help="send one image to the running API; prints JSON, writes PNGs")
    call.add_argument("endpoint", choices=("classify", "saliency"))
    call.add_argument("image")
    call.add_argument("--model", default="builtin")
    call.add_argument("--target", type=int)
    call.add_argument("--layer")
    call.add_argument("--method", choices=tuple(TECHNIQUES), help="shorthand for --param method=M")
    call.add_argument("--param", action="append", default=[], metavar="K=V",
                      help="params entry, the value parsed as JSON when it is (e.g. alpha=0.3, topk=3)")
    call.add_argument("--weights", choices=("pretrained", "random"), help="random: ask for an untrained network")
    call.add_argument("--out", default="out/call", help="where NAME.png files are written")
    call.add_argument("--url", help="default $CONVLENS_URL or http://127.0.0.1:$CONVLENS_INFERENCE_PORT")
    call.add_argument("--key-file", help="TorchServe's key_file.json (default $CONVLENS_KEY_FILE or serve/run)")
    call.add_argument("--timeout", type=float, default=120.0)
    call.set_defaults(func=cmd_call)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, KeyError, ValueError) as exc:  # SchemaError and decode errors included
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
