"""The corpus commands of ``convlens`` (added to :func:`convlens.cli.build_parser`):

    convlens dataset list | add NAME PATH_OR_ZIP | builtin NAME --n N [--workers W] | natural NAME | remove NAME
    convlens codes DATASET [--model M] [--layer L] [--ray auto|HOST:PORT]   last line: codes=N dim=D seconds=S
    convlens project DATASET --method umap|tsne|pca           last line: points=N seconds=S
    convlens neighbours DATASET IMAGE --k 8 --out DIR         IMAGE: a file, or a dataset index
    convlens top-patches DATASET --layer L --channel C --k 9 --out DIR   writes grid.png
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _progress(prefix: str):  # type: ignore[no-untyped-def]
    last = [0.0]

    def report(done: int, total: int, *_: Any) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] > 1.0:
            last[0] = now
            print(f"{prefix} {done}/{total}", file=sys.stderr, flush=True)

    return report


def _exit_on_terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: the dataset being written is removed


def cmd_dataset(args: argparse.Namespace) -> int:
    import signal

    from convlens.corpus import datasets as store

    if args.action == "list":
        rows = store.list_datasets()
        print(f"# data directory: {store.data_dir()}")
        for d in rows:  # from each index: no file is read (describe() would check every file's fingerprint)
            print(f"{d.name:24s} {len(d):>8} images {len(d.classes):>5} labels  {d.meta.get('source', '')}")
        print(f"datasets={len(rows)}")
        return 0
    started = time.perf_counter()
    if args.action == "remove":
        store.remove_dataset(args.name)
        print(f"removed {args.name}")
        return 0
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_terminate) if main else None
    try:
        if args.action == "add":
            ds = store.add(args.name, Path(args.path), progress=_progress("files"))
        elif args.action == "builtin":
            ds = store.builtin(args.name, args.n, seed=args.seed, progress=_progress("images"), workers=args.workers)
        else:
            ds = store.natural(args.name)
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    skipped = ds.meta.get("skipped", 0)
    print(f"{ds.name}: {len(ds)} images, {len(ds.classes)} labels, {skipped} files skipped, in {ds.root}")
    print(f"images={len(ds)} seconds={time.perf_counter() - started:.2f}")
    return 0


def _model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from convlens.models import load_model

    return load_model(args.model, weights="random" if args.random else "pretrained")


def cmd_codes(args: argparse.Namespace) -> int:
    from convlens.corpus import datasets as store
    from convlens.corpus.codes import cluster_address, dataset_codes
    from convlens.corpus.ray_codes import ClusterError

    started = time.perf_counter()
    loaded = _model(args)
    ds = store.open_dataset(args.dataset)
    if args.layer:
        loaded.layer(args.layer)
    try:
        codes = dataset_codes(loaded, ds, args.layer, args.pool, args.batch_size, progress=_progress("codes"),
                              ray=args.ray, ray_actors=args.ray_actors)
    except ClusterError as exc:  # one line, and no fallback to this process: the cluster was asked for
        print(f"convlens: error: {exc}", file=sys.stderr)
        return 1
    address = cluster_address(args.ray)
    where = f" ray={address}" if address and not codes.cached else ""
    print(f"model={loaded.name} layer={codes.layer} cached={codes.cached} cache={codes.key}{where}")
    print(f"codes={len(codes.vectors)} dim={codes.dim} seconds={time.perf_counter() - started:.2f}")
    return 0


def _write(images: dict[str, Any], out: Path) -> list[Path]:
    from convlens.images import encode_png

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in images.items():
        path = out / f"{name}.png"
        path.write_bytes(encode_png(image))
        paths.append(path)
    return paths


def cmd_project(args: argparse.Namespace) -> int:
    import numpy as np

    from convlens.pipeline import run

    started = time.perf_counter()
    loaded = _model(args)
    _ = loaded.layers  # the layer catalogue (a probe pass): a server has it before any request
    call_started = time.perf_counter()
    params = {"dataset": args.dataset, "projection": args.method, "seed": args.seed, "grid": args.grid}
    [output] = run(loaded, "embedding", [{}], layer=args.layer, params=params, progress=_progress("codes"))
    call_seconds = time.perf_counter() - call_started
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "points.npy", np.asarray(output.points, dtype=np.float32))
        for path in _write(output.images, out):
            print(f"wrote {path}")
    print(f"method={args.method} codes_cached={bool(output.scalars['codes_cached'])} "
          f"projection_cached={bool(output.scalars['projection_cached'])} call_seconds={call_seconds:.3f}")
    print(f"points={len(output.points or [])} seconds={time.perf_counter() - started:.2f}")
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from convlens.images import decode_image
    from convlens.pipeline import run

    loaded = _model(args)
    params: dict[str, Any] = {"dataset": args.dataset, "k": args.k, "space": args.space, "metric": args.metric}
    inputs: dict[str, Any] = {}
    if Path(args.image).is_file():
        inputs["image"] = decode_image(Path(args.image).read_bytes())
    elif args.image.isascii() and args.image.isdigit():  # "²" and "١" are digits to str.isdigit
        params["query"] = int(args.image)
    else:
        raise FileNotFoundError(f"{args.image} is neither an image file nor a dataset index")
    [output] = run(loaded, "neighbours", [inputs], layer=args.layer, params=params)
    for item in output.items:
        print(f"{item['space']:5s} #{item['rank']} index={item['index']} distance={item['distance']:.4f} "
              f"{item['label']} {item['file']}")
    for path in _write(output.images, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_top_patches(args: argparse.Namespace) -> int:
    from convlens.pipeline import run

    loaded = _model(args)
    params = {"dataset": args.dataset, "channel": args.channel, "k": args.k}
    [output] = run(loaded, "top_patches", [{}], layer=args.layer, params=params, progress=_progress("images"))
    for item in output.items[:64]:
        print(f"channel {item['channel']} #{item['rank']} activation={item['activation']:.3f} index={item['index']} "
              f"unit=({item['y']},{item['x']}) box=({item['top']},{item['left']})-({item['bottom']},{item['right']}) "
              f"{item['label']}")
    for path in _write(output.images, Path(args.out)):
        print(f"wrote {path}")
    print(f"layer={output.layer} receptive_field={output.scalars['receptive_field']:.0f} "
          f"channels={output.scalars['channels']:.0f}")
    return 0


def add_corpus_commands(sub: Any) -> None:
    dataset = sub.add_parser("dataset", help="datasets under $CONVLENS_DATA_DIR").add_subparsers(
        dest="action", required=True)
    dataset.add_parser("list", help="every dataset").set_defaults(func=cmd_dataset)
    add = dataset.add_parser("add", help="a folder (subfolders = labels) or a zip")
    add.add_argument("name")
    add.add_argument("path", metavar="PATH_OR_ZIP")
    add.set_defaults(func=cmd_dataset)
    gen = dataset.add_parser("builtin", help="images of the built-in generator, with labels and masks")
    gen.add_argument("name")
    gen.add_argument("--n", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=2, help="stream (0 and 1 are the model's training/held-out)")
    gen.add_argument("--workers", type=int, help="processes rendering images (default: one per core from 2,000 "
                                                 "images, at most $CONVLENS_DATASET_WORKERS; the files are the same)")
    gen.set_defaults(func=cmd_dataset)
    nat = dataset.add_parser("natural", help="the sample photographs of scikit-image and scikit-learn, with crops")
    nat.add_argument("name")
    nat.set_defaults(func=cmd_dataset)
    rm = dataset.add_parser("remove", help="delete a dataset")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_dataset)

    def model_args(p: Any) -> None:
        p.add_argument("dataset")
        p.add_argument("--model", default="builtin", help="a built-in or registered model (convlens models)")
        p.add_argument("--layer")
        p.add_argument("--random", action="store_true", help="random weights, explicitly")

    codes = sub.add_parser("codes", help="CNN codes of a dataset (cached); last line codes=N dim=D seconds=S")
    model_args(codes)
    codes.add_argument("--pool", choices=("avg", "max"), default="avg")
    codes.add_argument("--batch-size", type=int)
    codes.add_argument("--ray", metavar="auto|HOST:PORT",
                       help="compute on a Ray cluster (default: $CONVLENS_RAY_ADDRESS; unset: in this process); auto: "
                            "$CONVLENS_RAY_ADDRESS, else a cluster already running on this machine")
    codes.add_argument("--ray-actors", type=int, metavar="N", help="at most N model actors (default: one per CPU "
                       "group of $CONVLENS_RAY_CPUS_PER_ACTOR, or per GPU)")
    codes.set_defaults(func=cmd_codes)
    project = sub.add_parser("project", help="2-D map of the codes; last line points=N seconds=S")
    model_args(project)
    project.add_argument("--method", choices=("umap", "tsne", "pca"), default="umap")
    project.add_argument("--seed", type=int, default=0)
    project.add_argument("--grid", type=int, default=0, help="also write grid.png, GRID×GRID thumbnails")
    project.add_argument("--out", help="write points.npy (and grid.png) here")
    project.set_defaults(func=cmd_project)
    nn_ = sub.add_parser("neighbours", help="k nearest images by CNN code and by pixels")
    model_args(nn_)
    nn_.add_argument("image", help="an image file, or the index of a dataset image")
    nn_.add_argument("--k", type=int, default=8)
    nn_.add_argument("--space", choices=("both", "code", "pixel"), default="both")
    nn_.add_argument("--metric", choices=("l2", "cosine"), default="l2")
    nn_.add_argument("--out", default="out/neighbours")
    nn_.set_defaults(func=cmd_neighbours)
    top = sub.add_parser("top-patches", help="maximally activating patches of a channel; writes grid.png")
    model_args(top)
    top.add_argument("--channel", type=int, help="omit for every channel's strongest patch")
    top.add_argument("--k", type=int, default=9)
    top.add_argument("--out", default="out/top-patches")
    top.set_defaults(func=cmd_top_patches)
