"""``convlens`` — the product's command line.

    convlens models                       the zoo and where each model's weights are
    convlens layers MODEL [--random]      layer catalogue: shape, receptive field, stride
    convlens builtin train|eval|sample    the built-in offline model
    convlens weights fetch [MODEL...]     download ImageNet weights (needs internet)
    convlens faithfulness --method M      pointing game on the built-in dataset
    convlens explain IMAGE --method M     one image explained locally, maps written as PNG
    convlens run TECHNIQUE [IMAGE ...]    any technique in process; images as PNG, a summary (--json: all of it)
    convlens style train --style IMG ...  train a fast (feed-forward, conditional IN) style network
    convlens style export CKPT OUT        the network without its optimiser state, to ship
    convlens demo --out DIR               every method on built-in samples, as one contact sheet
    convlens dataset|codes|project|neighbours|top-patches   datasets and what the model makes of them
                                          (``convlens/corpus/cli.py``)

The ``convlens`` console script adds ``call`` and ``serve`` (the API commands, ``client/cli.py``),
which the core may not import.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _progress(prefix: str, every: int = 1):  # type: ignore[no-untyped-def]
    def report(step: int, total: int, info: object = None) -> None:
        """``info``: a training record (named numbers) or a technique's preview image (not printed)."""
        if step % every == 0 or step == total:
            extra = " ".join(f"{k}={v:.4g}" for k, v in info.items()) if isinstance(info, dict) else ""
            print(f"{prefix} {step}/{total} {extra}".rstrip(), file=sys.stderr, flush=True)

    return report


def cmd_models(args: argparse.Namespace) -> int:
    from convlens import zoo
    from convlens.models import REGISTRY, find_weights

    for name, spec in REGISTRY.items():
        path = find_weights(name)
        status = f"weights: {path}" if path else f"weights missing (expected {spec.weights_file})"
        print(f"{name:14s} {spec.description}\n{'':14s} {status}")
    for entry in zoo.list_models():
        card = entry.card
        about = card.description if card else f"unavailable: {entry.reason}"
        where = f"registered: {entry.folder}" + (f" ({card.source}, {len(card.classes)} classes)" if card else "")
        print(f"{entry.name:14s} {about}\n{'':14s} {where}")
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


def cmd_style_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from convlens.techniques.stylize.net import NetConfig
    from convlens.training.stylize import TrainConfig, Trainer, content_pool, load_image

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in {"steps": args.steps, "batch": args.batch, "size": args.size, "seed": args.seed,
                                   "lr": args.lr, "style_weight": args.style_weight, "scenes": args.scenes,
                                   "checkpoint_every": args.checkpoint_every, "style_size": args.style_size,
                                   "content_weight": args.content_weight, "balance": args.balance,
                                   "hard": args.hard, "hard_by": args.hard_by, "ema": args.ema,
                                   "style_boost": _boosts(args.style_boost)}.items()
                 if v is not None}
    if args.widths is not None or args.blocks is not None or args.color is not None:
        default = NetConfig()
        widths = tuple(args.widths) if args.widths is not None else default.widths
        overrides["net"] = NetConfig(widths=widths, blocks=args.blocks if args.blocks is not None else default.blocks,
                                     color=bool(args.color))
    config = dataclasses.replace(TrainConfig(), **overrides)
    paths = [Path(p) for p in args.style]
    names = args.name or [p.stem for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise ValueError("--name: one distinct name per --style image")
    styles = [load_image(p) for p in paths]
    pool, sources = content_pool(args.content, scenes=config.scenes, size=config.size,
                                 exclude=args.exclude_content or ())
    trainer = Trainer(styles, names, pool, config, content_sources=sources)
    out = Path(args.out)
    if args.resume and out.is_file():
        trainer.load(out)
        print(f"resumed {out} at step {trainer.step_count}", file=sys.stderr)
    elif args.grow_from:
        trainer.load(args.grow_from, grown=True)
        print(f"grew {args.grow_from} (step {trainer.step_count}) into {config.net.to_dict()}", file=sys.stderr)
    meta = [{"source": str(p)} for p in paths]
    trainer.train(callback=_progress("style train step", every=args.log_every), checkpoint=out, styles_meta=meta)
    trainer.save(out, meta)
    print(json.dumps({"checkpoint": str(out), "mb": round(out.stat().st_size / 1e6, 2), "steps": trainer.step_count,
                      "seconds": round(trainer.seconds, 1), "styles": names,
                      "last_loss": trainer.history["loss"][-1] if trainer.history["loss"] else None}))
    return 0


def _boosts(pairs: list[str] | None) -> dict[str, float] | None:
    """``["coffee=3", ...]`` → ``{"coffee": 3.0}`` (None when not given)."""
    if pairs is None:
        return None
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            if not name:
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--style-boost: expected NAME=FACTOR, got {pair!r}") from None
    return out


def cmd_style_export(args: argparse.Namespace) -> int:
    from convlens.training.stylize import export

    state = export(args.checkpoint, args.out, ema=args.ema)
    out = Path(args.out)
    print(json.dumps({"checkpoint": str(out), "mb": round(out.stat().st_size / 1e6, 2), "steps": state["step"],
                      "styles": state["styles"]}))
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
    """Prints one line per measurement; with the default ``--metric pointing`` the last is pointing_game=."""
    from convlens.faithfulness import deletion_insertion_game, pointing_game, randomisation_check
    from convlens.models import load_model

    loaded = load_model("builtin")
    params = {"layer": args.layer} if args.layer else {}
    metrics = ("randomisation", "deletion", "pointing") if args.metric == "all" else (args.metric,)
    if "randomisation" in metrics:
        r = randomisation_check(loaded, args.method, n=min(args.n, 16), seed=args.seed, params=params,
                                callback=_progress("layers randomised"))
        for layer, similarity in zip(["(none)", *r.layers], r.similarity, strict=True):
            print(f"randomised down to {layer:24s} similarity={similarity:.3f}")
        print(f"randomisation_similarity={r.similarity[-1]:.4f}")
    if "deletion" in metrics:
        c = deletion_insertion_game(loaded, args.method, n=args.n, seed=args.seed, steps=args.steps, params=params,
                                    callback=_progress("images"))
        print("fraction  " + " ".join(f"{f:5.2f}" for f in c.fractions))
        print("deletion  " + " ".join(f"{p:5.2f}" for p in c.deletion))
        print("insertion " + " ".join(f"{p:5.2f}" for p in c.insertion))
        print(f"deletion_auc={c.deletion_auc:.4f} insertion_auc={c.insertion_auc:.4f}")
    if "pointing" in metrics:
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
    from convlens import registry
    from convlens.images import decode_image
    from convlens.models import load_model
    from convlens.pipeline import explain
    from convlens.schema import target_from_text

    loaded = load_model(args.model, weights="random" if args.random else "pretrained")
    img = decode_image(Path(args.image).read_bytes())
    target = None if args.target is None else target_from_text(args.target, loaded.classes)
    methods = [s.name for s in registry.of_family("attribution")] if args.method == "all" else [args.method]
    for method in methods:
        e = explain(loaded, img, method, target=target, layer=args.layer)
        top = ", ".join(f"{label} {p:.1%}" for _i, label, p in e.topk)
        print(f"{method}: model={e.model} weights={e.weights} target={e.target} ({e.target_label}) "
              f"layer={e.layer} top: {top}")
        for path in _write_explanation(e, Path(args.out)):
            print(f"  wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from convlens import registry
    from convlens.builtin.dataset import CLASSES, HELDOUT_SEED, render_sample
    from convlens.images import encode_png, grid
    from convlens.models import load_model
    from convlens.pipeline import explain

    techniques = registry.of_family("attribution")
    loaded = load_model("builtin")
    tiles = []
    for label in range(len(CLASSES)):
        sample = render_sample(HELDOUT_SEED, label)
        img = Image.fromarray(sample.image)
        row = [torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255]
        for spec in techniques:
            e = explain(loaded, img, spec.name)
            row.append(e.images["overlay"])
        tiles.extend(row)
        print(f"{CLASSES[label]:20s} predicted {e.target_label} ({e.topk[0][2]:.1%})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "attribution_sheet.png"
    sheet.write_bytes(encode_png(grid(tiles, columns=1 + len(techniques))))
    print(f"columns: input, {', '.join(t.title for t in techniques)}")
    print(f"wrote {sheet}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from convlens.images import decode_image, encode_png
    from convlens.models import load_model
    from convlens.output_lines import response_text
    from convlens.pipeline import run, technique_spec
    from convlens.registry import FAMILY_OUTPUTS
    from convlens.schema import assign_inputs, parse_assignment, target_from_text

    spec = technique_spec(args.technique, "technique")
    paths = assign_inputs(args.images, spec.inputs, spec.optional_inputs, spec.name)
    loaded = load_model(args.model, weights="random" if args.random else "pretrained")
    inputs = {name: decode_image(Path(path).read_bytes()) for name, path in paths.items()}
    params = dict(parse_assignment(item) for item in args.param)
    target = None if args.target is None else target_from_text(args.target, loaded.classes)
    started = time.perf_counter()
    [output] = run(loaded, spec.name, [inputs], [target], args.layer, params,
                   progress=_progress(spec.name, every=10) if spec.family in ("synthesis", "corpus") else None)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, image in output.images.items():
        path = out / f"{name}.png"
        path.write_bytes(encode_png(image))
        written[name] = str(path)
    response = {**output.to_json(lambda _image: ""), "images": written, "seconds": round(seconds, 3)}
    print(response_text(spec.declared, response, as_json=args.json, common=FAMILY_OUTPUTS[spec.family]))
    return 0


def build_parser(extend: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The core's commands; ``extend(subparsers)`` adds more (the console script adds call and serve)."""
    parser = argparse.ArgumentParser(prog="convlens", description="What a CNN has learned, and why it decides.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the model zoo and weight status").set_defaults(func=cmd_models)

    layers = sub.add_parser("layers", help="layer catalogue of a model")
    layers.add_argument("model", help="a built-in or registered model (convlens models)")
    layers.add_argument("--random", action="store_true", help="random weights (no pretrained file needed)")
    layers.set_defaults(func=cmd_layers)

    _add_builtin_commands(sub)
    _add_style_commands(sub)
    _add_weights_commands(sub)
    _add_local_commands(sub)
    from convlens.corpus.cli import add_corpus_commands

    add_corpus_commands(sub)
    from convlens.zoo.cli import add_model_commands

    add_model_commands(sub)
    if extend is not None:
        extend(sub)
    return parser


def _add_builtin_commands(sub: Any) -> None:
    from convlens.builtin.dataset import HELDOUT_SEED

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


def _add_style_commands(sub: Any) -> None:
    style = sub.add_parser("style", help="fast style networks").add_subparsers(dest="action", required=True)
    st = style.add_parser("train", help="train one conditional-IN network for several styles")
    st.add_argument("--style", action="append", required=True, metavar="IMG", help="a style image (repeat)")
    st.add_argument("--name", action="append", help="the style's name (repeat; default: the file's stem)")
    st.add_argument("--content", help="a folder of extra content images (photos and scenes are always used)")
    st.add_argument("--exclude-content", action="append", help="a scikit-image photo to leave out (repeat)")
    st.add_argument("--out", required=True, help="checkpoint; model card written beside it")
    st.add_argument("--resume", action="store_true", help="continue from --out when it exists")
    for flag, kind in (("--steps", int), ("--batch", int), ("--size", int), ("--seed", int), ("--lr", float),
                       ("--style-weight", float), ("--content-weight", float), ("--scenes", int),
                       ("--checkpoint-every", int), ("--style-size", int), ("--hard", float), ("--ema", float)):
        st.add_argument(flag, type=kind)
    st.add_argument("--hard-by", choices=("loss", "style"),
                    help="what --hard ranks styles by: their whole loss (default) or their style term")
    st.add_argument("--style-boost", action="append", metavar="NAME=FACTOR",
                    help="multiply one style's style weight (repeat; e.g. coffee=3)")
    st.add_argument("--widths", type=int, nargs=3, metavar="C", help="the three stage widths (default 16 32 48)")
    st.add_argument("--blocks", type=int, help="the network's residual blocks (default 3)")
    st.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                    help="a per-style 3×3 colour mixing and shift on the output (default off)")
    st.add_argument("--grow-from", metavar="CKPT",
                    help="start from CKPT's network grown to --blocks/--color (new parts identities; its steps, "
                         "history and stages go on, Adam restarts); --resume takes --out first when it exists")
    st.add_argument("--balance", action=argparse.BooleanOptionalAction, default=None,
                    help="divide each style's loss by its running mean (default on)")
    st.add_argument("--log-every", type=int, default=10)
    st.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    st.set_defaults(func=cmd_style_train)
    ex = style.add_parser("export", help="copy a trained network without its optimiser state (to ship it)")
    ex.add_argument("checkpoint")
    ex.add_argument("out", help="the exported checkpoint; model card written beside it")
    ex.add_argument("--ema", action="store_true", help="ship the weights' moving average (trained with --ema)")
    ex.set_defaults(func=cmd_style_export)


def _add_weights_commands(sub: Any) -> None:
    weights = sub.add_parser("weights", help="ImageNet weights").add_subparsers(dest="action", required=True)
    fetch = weights.add_parser("fetch", help="download into the torch hub cache (needs internet)")
    fetch.add_argument("models", nargs="*", metavar="MODEL")
    fetch.set_defaults(func=cmd_weights_fetch)
    weights.add_parser("list", help="where each model's weights are").set_defaults(func=cmd_weights_list)


def _add_local_commands(sub: Any) -> None:
    """Commands that run techniques in this process: faithfulness, explain, demo, run."""
    from convlens import registry
    from convlens.builtin.dataset import HELDOUT_SEED
    attribution = tuple(s.name for s in registry.of_family("attribution"))

    faith = sub.add_parser("faithfulness", help="pointing game, deletion/insertion, randomisation check")
    faith.add_argument("--method", choices=attribution, required=True)
    faith.add_argument("--n", type=int, default=200)
    faith.add_argument("--seed", type=int, default=HELDOUT_SEED)
    faith.add_argument("--tolerance", type=int, default=0, help="pixels of slack around the mask")
    faith.add_argument("--layer", help="layer for gradcam / guided neuron objective")
    faith.add_argument("--metric", choices=("pointing", "deletion", "randomisation", "all"), default="pointing",
                       help="deletion: deletion/insertion curves and AUCs (Petsiuk et al. 2018); randomisation: "
                            "cascading model randomisation (Adebayo et al. 2018)")
    faith.add_argument("--steps", type=int, default=16, help="deletion/insertion: shares of pixels")
    faith.set_defaults(func=cmd_faithfulness)

    ex = sub.add_parser("explain", help="explain one image locally (no server)")
    ex.add_argument("image")
    ex.add_argument("--model", default="builtin", help="a built-in or registered model (convlens models)")
    ex.add_argument("--method", choices=(*attribution, "all"), default="all")
    ex.add_argument("--target", help="class index or label")
    ex.add_argument("--layer")
    ex.add_argument("--random", action="store_true", help="random weights, explicitly")
    ex.add_argument("--out", default="out/explain")
    ex.set_defaults(func=cmd_explain)

    demo = sub.add_parser("demo", help="every method on built-in samples, one contact sheet")
    demo.add_argument("--out", default="out/demo")
    demo.set_defaults(func=cmd_demo)

    runner = sub.add_parser("run", help="any technique in process; images written as PNG, a summary printed")
    runner.add_argument("technique", choices=tuple(registry.registry()))
    runner.add_argument("images", nargs="*", metavar="IMAGE", help="the technique's images, in order")
    runner.add_argument("--model", default="builtin", help="a built-in or registered model (convlens models)")
    runner.add_argument("--target", help="class index or label")
    runner.add_argument("--layer")
    runner.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="params entry, the value parsed as JSON when it is (e.g. window=8)")
    runner.add_argument("--random", action="store_true", help="random weights, explicitly")
    runner.add_argument("--out", default="out/run")
    runner.add_argument("--json", action="store_true", help="print the whole answer as JSON (image paths, every "
                                                            "scalar, series and item) instead of a summary")
    runner.set_defaults(func=cmd_run)


def main(argv: Sequence[str] | None = None, extend: Callable[[Any], None] | None = None) -> int:
    args = build_parser(extend).parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, KeyError, ValueError) as exc:  # SchemaError and decode errors included
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
