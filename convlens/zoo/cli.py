"""The ``convlens model`` commands (added to :func:`convlens.cli.build_parser`):

    convlens model add NAME --arch SOURCE --weights FILE --classes FILE [--input-size N ...] [--code FILE]
    convlens model list                 last line: models=N available=K
    convlens model show NAME            the manifest, then the card
    convlens model check NAME           the card; exit 0 when the model loads
    convlens model remove NAME

A refusal prints one line ``convlens: error: <field>: <message>`` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _card_lines(card: Any) -> list[str]:
    classes = ", ".join(card.classes[:10]) + (f", ... ({len(card.classes)} in all)" if len(card.classes) > 10 else "")
    return [
        f"name:         {card.name}",
        f"description:  {' '.join(card.description.split())}",
        f"architecture: {card.source} ({card.kind})",
        f"classes:      {len(card.classes)}: {classes}",
        f"input:        {card.channels} channel(s), {card.input_size} px (resize {card.resize_size}), "
        f"mean {list(card.mean)}, std {list(card.std)}",
        f"parameters:   {card.parameters:,}",
        f"weights:      {card.weights_file} sha256={card.weights_sha256}",
        f"layers:       {card.layer_count}; Grad-CAM layer {card.cam_layer}, code layer {card.code_layer}",
    ]


def _add(args: argparse.Namespace) -> int:
    from convlens import zoo

    started = time.perf_counter()
    field = "preprocessing.mean"
    try:
        mean = None if args.mean is None else _floats(args.mean)
        field = "preprocessing.std"
        std = None if args.std is None else _floats(args.std)
    except ValueError:
        raise zoo.ManifestError(field, "must be comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    try:
        kwargs = None if args.kwargs is None else json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise zoo.ManifestError("architecture.kwargs", f"is not valid JSON: {exc}") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise zoo.ManifestError("architecture.kwargs", "must be a JSON object, e.g. '{\"num_classes\": 3}'")
    card = zoo.add(
        args.name, args.arch, Path(args.weights), Path(args.classes), input_size=args.input_size,
        resize_size=args.resize_size, mean=mean, std=std, channels=args.channels, kwargs=kwargs,
        description=args.description, key=args.key, strip_prefix=args.strip_prefix or (), cam_layer=args.cam_layer,
        code_layer=args.code_layer, code=args.code, replace=args.replace,
    )
    print("\n".join(_card_lines(card)))
    print(f"added {card.name} to {zoo.models_dir() / card.name} in {time.perf_counter() - started:.2f} s")
    return 0


def _list(args: argparse.Namespace) -> int:
    from convlens import zoo

    entries = zoo.list_models()
    print(f"# models directory: {zoo.models_dir()}")
    for e in entries:
        if e.card is not None:
            about = " ".join(e.card.description.split())
            print(f"{e.name:24s} available    {e.card.source}, {len(e.card.classes)} classes, "
                  f"{e.card.input_size} px  {about}".rstrip())
        else:
            print(f"{e.name:24s} unavailable  {e.reason}")
    print(f"models={len(entries)} available={sum(e.status == 'available' for e in entries)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from convlens import zoo

    text, card = zoo.show(args.name)
    print(text.rstrip())
    print("\n# checked:\n" + "\n".join(_card_lines(card)))
    return 0


def _check(args: argparse.Namespace) -> int:
    from convlens import zoo

    started = time.perf_counter()
    _net, card = zoo.load(args.name)
    print("\n".join(_card_lines(card)))
    print(f"ok {card.name} seconds={time.perf_counter() - started:.2f}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from convlens import zoo

    zoo.remove(args.name)
    print(f"removed {args.name}")
    return 0


def _reporting(command: Any) -> Any:
    """Run ``command``; a :class:`ManifestError` becomes one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from convlens.zoo.manifest import ManifestError

        try:
            return int(command(args))
        except ManifestError as exc:
            print(f"convlens: error: {exc.field}: {exc.message}", file=sys.stderr)
            return 2

    return run


def add_model_commands(sub: Any) -> None:
    model = sub.add_parser("model", help="your own models under $CONVLENS_MODELS_DIR").add_subparsers(
        dest="action", required=True)
    add = model.add_parser("add", help="add a model folder: weights, classes, manifest; checked before it appears")
    add.add_argument("name")
    add.add_argument("--arch", required=True, metavar="SOURCE",
                     help="torchvision:NAME, timm:NAME or python:FILE.py:BUILDER (with --code)")
    add.add_argument("--weights", required=True, metavar="FILE", help=".safetensors (preferred), .pt or .pth")
    add.add_argument("--classes", required=True, metavar="FILE", help="one class name a line")
    add.add_argument("--input-size", type=int, metavar="N")
    add.add_argument("--resize-size", type=int, metavar="N")
    add.add_argument("--mean", metavar="A,B,C")
    add.add_argument("--std", metavar="A,B,C")
    add.add_argument("--channels", type=int, choices=(1, 3))
    add.add_argument("--kwargs", metavar="JSON", help="keyword arguments of the builder, e.g. '{\"num_classes\": 3}'")
    add.add_argument("--description", default="")
    add.add_argument("--key", help=".pt/.pth: the state dict sits under this key of the checkpoint")
    add.add_argument("--strip-prefix", action="append", metavar="P", help="remove P from the keys (repeat)")
    add.add_argument("--cam-layer", help="Grad-CAM layer, when the default does not fit")
    add.add_argument("--code-layer", help="CNN-code layer, when the default does not fit")
    add.add_argument("--code", metavar="FILE", help="python: sources: the operator's code file (trusted, executed)")
    add.add_argument("--replace", action="store_true", help="replace a model of the same name")
    add.set_defaults(func=_reporting(_add))
    model.add_parser("list", help="every model, available or not (with the reason)").set_defaults(
        func=_reporting(_list))
    for action, func, text in (("show", _show, "the manifest and the checked card"),
                               ("check", _check, "load the model and print its card"),
                               ("remove", _remove, "delete a model folder")):
        p = model.add_parser(action, help=text)
        p.add_argument("name")
        p.set_defaults(func=_reporting(func))
