"""Pixel-space neighbours of a large dataset: its pixel rows (each image's centred square at 32×32, 3,072 uint8,
memory-mapped) computed, and the faiss index over them built, from a cold cache; then queries that are new images
(built-in stream 3: never in the dataset) one a call; recall@10 against exact search.

    .venv/bin/python bench/pixel_index.py --data /tmp/convlens-scale --dataset shapes1m

The same calls the neighbours technique makes (``dataset_pixels``, ``index.nearest`` in L2); peak RSS is this
process's.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the data folder ($CONVLENS_DATA_DIR)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--queries", type=int, default=200, help="timed one-query calls")
    ap.add_argument("--recall-queries", type=int, default=50, help="of them, compared with exact search")
    ap.add_argument("--reuse-index", action="store_true", help="query the index on disk instead of building it")
    args = ap.parse_args(argv)
    os.environ["CONVLENS_DATA_DIR"] = str(args.data)
    from PIL import Image

    from bench.neighbour_index import K, per_query, recall
    from convlens.builtin.dataset import render_sample
    from convlens.corpus import index as X
    from convlens.corpus.codes import PIXEL_SIZE, dataset_pixels, pixel_row
    from convlens.corpus.datasets import open_dataset
    from convlens.corpus.search import knn

    ds = open_dataset(args.dataset)
    started = time.perf_counter()
    pixels = dataset_pixels(ds, progress=lambda d, n: print(f"pixels {d}/{n}", file=sys.stderr, flush=True)
                            if d % 50_000 == 0 or d == n else None)
    pixels_s = time.perf_counter() - started
    source = X.backing_file(pixels)
    assert source is not None
    for path in () if args.reuse_index else (X.index_path(source, "l2"), X._record_path(X.index_path(source, "l2"))):
        path.unlink(missing_ok=True)
    X.forget()
    queries = np.stack([pixel_row(Image.fromarray(render_sample(3, i).image), PIXEL_SIZE)
                        for i in range(args.queries)])
    started = time.perf_counter()
    first = X.nearest(queries[:1], pixels, K)
    build_s = time.perf_counter() - started
    found, times = per_query(queries, pixels)
    started = time.perf_counter()
    truth, _ = knn(queries[:args.recall_queries], pixels, K)
    exact_ms = (time.perf_counter() - started) * 1e3 / args.recall_queries
    found_recall = recall(found[:args.recall_queries], truth)
    ms = np.array(times) * 1e3
    index_file = X.index_path(source, "l2")
    size = index_file.stat().st_size if index_file.is_file() else 0  # none below the exact-search threshold
    print(f"| {len(pixels):,} | {pixels.shape[1]:,} uint8 | {pixels_s:,.0f} s | {first.method} | {build_s:,.0f} s | "
          f"{size / 2**20:,.0f} MiB | {found_recall:.4f} ({args.recall_queries} q) | {ms.mean():.1f} / "
          f"{np.percentile(ms, 95):.1f} ms ({len(ms)} q) | {exact_ms:,.0f} ms | "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB |")
    print("columns: images | row | pixels computed | index | index built | index file | recall@10 vs exact | "
          "mean / p95 a query | exact a query (batched) | peak RSS")
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
