"""2-D maps at scale (convlens.corpus.projection): UMAP, t-SNE and PCA of 100,000 and 1,000,000 codes — wall
time, peak memory, trustworthiness against a full UMAP fit, and the cached reopen.

    nice -n 19 .venv/bin/python bench/projection_scale.py --out docs/corpus.md        # 100k and 1M
    nice -n 19 .venv/bin/python bench/projection_scale.py --n 100000 --placement      # + placement variants
    nice -n 19 .venv/bin/python bench/projection_scale.py --codes codes.npy --n 1000000 --methods umap

The codes are synthetic unless ``--codes FILE.npy`` (an (N, D) float32 ``.npy``, e.g. a cached code set) is
given: a two-level mixture like a labelled image set (20 classes, each of 10 sub-clusters, each spread along
its own 8-dimensional subspace, plus isotropic noise), of the built-in model's code dimension (128, layer
``code``), float32, written once to a memory-mapped ``.npy`` that every run reads as the product does.

Every map is made in a fresh process by :func:`convlens.corpus.projection.cached_projection` with an empty
cache (UMAP's numba kernels compiled first by ``warm_up``, as the server does at start, not counted), so
"wall" is the product's codes → points time and "peak RSS" that process's own peak (``VmHWM``,
including the imported libraries and the codes' pages it touched; its peak before the map is shown beside).
"Reopen" is a second ``cached_projection`` of the same map in that process (a cache hit). Trustworthiness
(scikit-learn, k = 10) is computed on one seeded 10,000-point subsample of the codes (the same rows for every
map of a size), against the codes themselves. "UMAP, full fit" at 100,000 points is the reference the
sampled maps are held to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

HEADING = "## A projection for a million points: measurements (bench/projection_scale.py)"
DIM = 128  # the built-in model's code layer (convlens.builtin, layer "code")
TRUST_SAMPLE, TRUST_K = 10_000, 10
SUPERS, SUBS, INTRINSIC = 20, 10, 8


def synthetic_codes(path: Path, n: int, dim: int, seed: int = 0, chunk: int = 50_000) -> None:
    """``n`` codes of the two-level mixture, written to ``path`` (.npy) a chunk at a time."""
    layout = np.random.default_rng(12345)
    supers = layout.normal(0.0, 1.0, (SUPERS, dim)) * 2.0
    centres = (np.repeat(supers, SUBS, axis=0) + layout.normal(0.0, 1.0, (SUPERS * SUBS, dim)) * 0.8).astype(np.float32)
    bases = (layout.normal(0.0, 1.0, (SUPERS * SUBS, INTRINSIC, dim)) * 0.3).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = rng.integers(0, SUPERS * SUBS, m)
        z = rng.normal(0.0, 1.0, (m, INTRINSIC)).astype(np.float32)
        out[start:start + m] = centres[c] + np.einsum("mi,mid->md", z, bases[c]) \
            + rng.normal(0.0, 0.15, (m, dim)).astype(np.float32)
    out.flush()
    del out


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM`` (Linux), else ``ru_maxrss``. (``ru_maxrss`` keeps,
    across ``exec``, the resident size of the parent the process was forked from, so a worker started by a
    parent holding 3 GB would report 3 GB before doing anything.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def worker(args: argparse.Namespace) -> None:
    """One map in this (fresh) process; prints one JSON line."""
    from convlens.corpus import projection as P

    n = args.n[0]
    vectors = np.load(args.codes, mmap_mode="r")[:n]
    warm = P.warm_up() if args.method == "umap" else 0.0
    base = peak_rss_mb()
    key = f"bench-{Path(args.codes).name}-{n}"
    if args.variant == "product":
        proj = P.cached_projection(key, vectors, args.method, 0, fit_max=args.fit_max)
        seconds, fitted = proj.seconds, proj.fitted
        again = P.cached_projection(key, vectors, args.method, 0, fit_max=args.fit_max)
        assert again.cached and np.array_equal(again.points, proj.points)
        points, reopen = proj.points, again.seconds
    else:
        points, seconds, fitted = placement_variant(vectors, args.variant, args.fit_max)
        reopen = float("nan")
    np.save(args.points, points)
    print(json.dumps({"seconds": seconds, "fitted": fitted, "reopen": reopen, "warm_up": warm,
                      "rss_mb": peak_rss_mb(), "rss_after_imports_mb": base}))


def placement_variant(vectors: np.ndarray, variant: str, fit_max: int) -> tuple[np.ndarray, float, int]:
    """A UMAP map fitted on the product's sample, the other points placed by ``variant``: ``exact`` (the same
    weighted mean over exact neighbours, torch), ``transform`` (umap-learn's own ``transform``, on a UMAP
    fitted with NN-descent so that it has a search index). Only the placement is timed."""
    import torch

    from convlens.corpus import projection as P

    reduced = P.pca(vectors, P.PCA_DIMS)
    chosen = P.sample_indices(len(reduced), fit_max, 0)
    rest = np.setdiff1d(np.arange(len(reduced)), chosen)
    out = np.empty((len(reduced), 2), dtype=np.float32)
    if variant == "transform":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=15, random_state=0, low_memory=True,
                            n_epochs=P.UMAP_EPOCHS, init="pca").fit(reduced[chosen])
        out[chosen] = reducer.embedding_
        started = time.perf_counter()
        out[rest] = reducer.transform(reduced[rest])
        return out, time.perf_counter() - started, len(chosen)
    fit_points = P._fit(reduced[chosen], "umap", 0, 15, 30.0)
    out[chosen] = fit_points
    started = time.perf_counter()
    f = torch.from_numpy(np.ascontiguousarray(reduced[chosen]))
    sq = (f * f).sum(1)
    pos = torch.from_numpy(fit_points.astype(np.float64))
    rows = max(1, (64 << 20) // (4 * len(f)))
    for start in range(0, len(rest), rows):
        q = torch.from_numpy(reduced[rest[start:start + rows]])
        d2, idx = torch.topk(torch.addmm(sq[None, :], q, f.T, alpha=-2.0), P.PLACE_K, dim=1, largest=False)
        d = (d2 + (q * q).sum(1, keepdim=True)).clamp_min(0).sqrt().double()
        excess = d - d[:, :1]
        w = torch.exp(-excess / excess.mean(1, keepdim=True).clamp_min(1e-12))
        out[rest[start:start + rows]] = ((w[:, :, None] * pos[idx]).sum(1) / w.sum(1, keepdim=True)).float().numpy()
    return out, time.perf_counter() - started, len(chosen)


def run_one(codes: Path, n: int, method: str, fit_max: int | None, variant: str, tmp: Path) -> dict:
    points = tmp / f"points-{method}-{n}-{fit_max}-{variant}.npy"
    cache = tmp / f"cache-{method}-{n}-{fit_max}-{variant}"
    cmd = [sys.executable, __file__, "--worker", "--codes", str(codes), "--n", str(n), "--method", method,
           "--variant", variant, "--points", str(points)] + ([] if fit_max is None else ["--fit-max", str(fit_max)])
    env = dict(os.environ, CONVLENS_DATA_DIR=str(cache))
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    result["points"] = points
    return result


def trust(codes: np.ndarray, points: np.ndarray, rows: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(np.asarray(codes[rows], dtype=np.float32), points[rows], n_neighbors=TRUST_K))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--codes", help="an (N, D) float32 .npy of real codes instead of synthetic ones")
    ap.add_argument("--methods", nargs="+", default=["umap", "tsne", "pca"], choices=["umap", "tsne", "pca"])
    ap.add_argument("--full-umap-max", type=int, default=100_000, help="also fit UMAP on all points up to this N")
    ap.add_argument("--placement", action="store_true", help="also time exact and umap-learn placement")
    ap.add_argument("--out", help="replace this section of a markdown file (e.g. docs/corpus.md)")
    # worker mode (one map in a fresh process)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--fit-max", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="product", help=argparse.SUPPRESS)
    ap.add_argument("--points", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from bench.timing import machine_info, markdown_table, replace_section
    from convlens.corpus.projection import FIT_MAX

    started_at = dt.datetime.now(dt.UTC)
    info = machine_info(("umap-learn", "scikit-learn", "faiss-cpu"))
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="convlens-projection-") as tmp_name:
        tmp = Path(tmp_name)
        if args.codes:
            codes_path = Path(args.codes)
        else:
            codes_path = tmp / "codes.npy"
            t0 = time.perf_counter()
            synthetic_codes(codes_path, max(args.n), args.dim)
            print(f"synthetic codes {max(args.n)}×{args.dim}: {time.perf_counter() - t0:.1f} s", flush=True)
        codes = np.load(codes_path, mmap_mode="r")
        reference: float | None = None
        for n in sorted(args.n):
            subsample = np.sort(np.random.default_rng(1).choice(n, size=min(TRUST_SAMPLE, n), replace=False))
            plan: list[tuple[str, str, int | None, str]] = []
            if "umap" in args.methods and n <= args.full_umap_max:
                plan.append(("UMAP, full fit", "umap", n, "product"))
            for method in args.methods:
                label = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}[method]
                limit = FIT_MAX[method]
                plan.append((f"{label}" + (", sampled" if limit is not None and n > limit else ""), method, None,
                             "product"))
            if args.placement and "umap" in args.methods:
                plan.append(("UMAP, sample + exact placement", "umap", FIT_MAX["umap"], "exact"))
                plan.append(("UMAP, sample + umap-learn transform", "umap", FIT_MAX["umap"], "transform"))
            for label, method, fit_max, variant in plan:
                r = run_one(codes_path, n, method, fit_max, variant, tmp)
                points = np.load(r["points"])
                t = trust(codes[:n], points, subsample)
                if label == "UMAP, full fit" and n == 100_000:
                    reference = t
                row = [label, f"{n:,}", f"{r['fitted']:,}", f"{r['seconds']:.1f}",
                       "—" if variant != "product" else f"{r['reopen'] * 1000:.0f} ms",
                       f"{r['rss_mb'] / 1024:.2f} ({r['rss_after_imports_mb'] / 1024:.2f})", f"{t:.4f}"]
                rows.append(row)
                print(" | ".join(row), f"(process {r['process_seconds']:.0f} s, warm-up {r['warm_up']:.0f} s)",
                      flush=True)
                Path(r["points"]).unlink()
    load = os.getloadavg()
    header = ["map", "N", "fitted", "wall (s)", "cached reopen", "peak RSS, GB (before the map)",
              f"trustworthiness k={TRUST_K}"]
    table = markdown_table(header, rows)
    ref = f"{reference:.4f}" if reference is not None else "not measured in this run"
    body = "\n".join([
        f"Measured {started_at:%Y-%m-%d %H:%M} UTC by `bench/projection_scale.py` "
        f"(`nice -n 19 .venv/bin/python bench/projection_scale.py {' '.join(sys.argv[1:])}`), codes: "
        + (f"`{args.codes}`" if args.codes else f"synthetic, {args.dim}-d, {SUPERS}×{SUBS} clusters") + ".",
        "",
        table,
        "",
        f"Trustworthiness on one seeded {TRUST_SAMPLE:,}-point subsample per N; the full UMAP fit at 100,000 "
        f"points scores {ref}. Wall time is `cached_projection` from memory-mapped codes to points, cold cache; "
        "peak RSS is the whole process's, in brackets its peak before the map (imported libraries, UMAP's "
        "warm-up).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items())
        + f"; load average at end {', '.join(f'{v:.2f}' for v in load)}.",
    ])
    print(body)
    if args.out:
        replace_section(Path(args.out), HEADING, body, title="# Corpus")


if __name__ == "__main__":
    main()
