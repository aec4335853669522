"""Approximate-neighbour index (convlens.corpus.index): recall@10 against exact search at 100,000 codes, and
query time, build time and index size at 1,000,000 codes.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/neighbour_index.py --out docs/benchmarks.md
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/neighbour_index.py --quick   # 20k / 100k, prints only

The codes are synthetic, of the built-in model's code dimension (128, its ``code`` layer), float32: a
mixture of Gaussian clusters, each spread along its own 16-dimensional subspace plus isotropic noise
(CNN codes have far fewer degrees of freedom than dimensions and group by content), so that they are neither
trivially separable nor structureless. The queries are drawn from the same mixture and are not in the
database. Each size goes through :func:`convlens.corpus.index.nearest` with its default thresholds, so
100,000 codes use HNSW and 1,000,000 codes IVF; the other kind is measured at 100,000 too (forced), and
at 1,000,000 the recall is measured on a subset of the timed queries. Exact search is
:func:`convlens.corpus.search.knn` (chunked, float64), timed as the baseline. The index is built into a
temporary cache directory (deleted afterwards); query time is wall time of one-query calls of ``nearest``
(faiss search plus the exact re-ranking of its candidates), after a warm-up, with the index in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.timing import machine_info, markdown_table, replace_section  # noqa: E402
from convlens.corpus import index as X  # noqa: E402
from convlens.corpus.search import knn  # noqa: E402

HEADING = "## Neighbour index (bench/neighbour_index.py)"
DIM = 128  # the built-in model's code layer (convlens.builtin, layer "code")
K = 10


def clustered(n: int, dim: int, seed: int, clusters: int = 1000, intrinsic: int = 16,
              chunk: int = 20_000) -> np.ndarray:
    """``n`` synthetic codes: cluster centre + a 16-d subspace of the cluster + noise, float32."""
    layout = np.random.default_rng(12345)  # the mixture itself is the same for database and queries
    centres = layout.normal(0.0, 1.0, (clusters, dim)).astype(np.float32)
    bases = (layout.normal(0.0, 1.0, (clusters, intrinsic, dim)) * 0.35).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = rng.integers(0, clusters, m)
        z = rng.normal(0.0, 1.0, (m, intrinsic)).astype(np.float32)
        out[start:start + m] = centres[c] + np.einsum("mi,mid->md", z, bases[c]) \
            + rng.normal(0.0, 0.25, (m, dim)).astype(np.float32)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def per_query(queries: np.ndarray, codes: np.ndarray, **kw: object) -> tuple[np.ndarray, list[float]]:
    """One ``nearest`` call per query → (indices (Q, K), seconds per call)."""
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        f = X.nearest(q[None], codes, K, **kw)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t)
        found.append(f.indices[0])
    return np.stack(found), times


def measure(folder: Path, n: int, queries: np.ndarray, recall_queries: int, log=print,  # type: ignore[no-untyped-def]
            force: str | None = None) -> dict[str, object]:
    """Synthetic codes written to ``folder`` and measured by :func:`measure_file`, then deleted."""
    path = folder / f"codes{n}_{force or 'default'}.npy"
    t = time.perf_counter()
    np.save(path, clustered(n, DIM, seed=1))
    log(f"  {n:,} codes generated in {time.perf_counter() - t:.1f} s")
    result = measure_file(path, queries, recall_queries, log, force)
    path.unlink(missing_ok=True)
    return result


def measure_file(path: Path, queries: np.ndarray, recall_queries: int, log=print,  # type: ignore[no-untyped-def]
                 force: str | None = None) -> dict[str, object]:
    """The index of the codes in ``path`` (an (N, D) ``.npy``) built, reloaded and queried one query a call;
    recall@10 of the first ``recall_queries`` queries against exact search. The index files are deleted."""
    codes = np.load(path, mmap_mode="r")
    n = len(codes)
    kw: dict[str, object] = {} if force is None else {"exact_max": 0, "hnsw_max": 10**12 if force == "hnsw" else 0}
    X.forget()
    builds = X.builds()
    t = time.perf_counter()
    first = X.nearest(queries[:1], codes, K, **kw)  # type: ignore[arg-type]
    build_s = time.perf_counter() - t
    assert X.builds() == builds + 1 and not first.exact
    index_file = X.index_path(path, "l2")
    size = index_file.stat().st_size
    log(f"  {first.method} built in {build_s:.1f} s, {size / 2**20:.0f} MiB")
    X.forget()
    t = time.perf_counter()
    X.nearest(queries[:1], codes, K, **kw)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t
    assert X.builds() == builds + 1
    X.nearest(queries[:5], codes, K, **kw)  # type: ignore[arg-type]  # warm-up
    found, times = per_query(queries, codes, **kw)
    truth, _ = knn(queries[:recall_queries], codes, K)
    singles = []
    for q in queries[:10]:  # exact search as the technique calls it: one query a call
        t = time.perf_counter()
        knn(q[None], codes, K)
        singles.append(time.perf_counter() - t)
    exact_s = float(np.mean(singles))
    r = recall(found[:recall_queries], truth)
    ms = np.array(times) * 1e3
    log(f"  recall@10 {r:.4f} on {recall_queries} queries; {ms.mean():.2f} ms mean, {np.percentile(ms, 95):.2f} ms p95 "
        f"over {len(ms)} queries; exact search {exact_s * 1e3:.0f} ms/query")
    params = X._read_record(index_file) or {}
    result = {"n": n, "forced": force is not None, "method": first.method, "recall": r,
              "recall_queries": recall_queries, "mean_ms": ms.mean(),
              "p95_ms": float(np.percentile(ms, 95)), "queries": len(ms), "build_s": build_s, "load_s": load_s,
              "size": size, "exact_ms": exact_s * 1e3, "params": params.get("params", {})}
    del codes
    for p in (index_file, X._record_path(index_file)):
        p.unlink(missing_ok=True)
    X.forget()
    return result


def main(argv: list[str] | None = None) -> int:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="markdown file whose neighbour-index section is (re)written")
    ap.add_argument("--quick", action="store_true", help="20,000 and 100,000 codes instead of 100,000 and 1,000,000")
    ap.add_argument("--queries", type=int, default=1000, help="timed one-query calls per size")
    ap.add_argument("--recall-queries", type=int, default=1000, help="of them, compared with exact search")
    ap.add_argument("--threads", type=int, default=1, help="torch and faiss threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    small, large = (20_000, 100_000) if args.quick else (100_000, 1_000_000)
    queries = clustered(args.queries, DIM, seed=2)
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="neighbour-index-") as tmp:
        natural = X.method_for(small)
        first: str | None = None if natural != "exact" else "hnsw"  # --quick: 20,000 is below the threshold
        for n, force in ((small, first), (small, "ivf" if natural != "ivf" else "hnsw"), (large, None)):
            print(f"{n:,} codes, {force or 'default'} index")
            rq = args.recall_queries if n < 1_000_000 else min(args.recall_queries, 200)
            rows.append(measure(Path(tmp), n, queries, min(rq, args.queries), force=force))
    load_end = os.getloadavg()
    info = machine_info(("faiss-cpu",))
    table = markdown_table(
        ["codes", "index", "parameters", "recall@10 vs exact", "mean ms/query", "p95 ms/query", "exact ms/query",
         "build s", "load s", "index MiB"],
        [[f"{r['n']:,}" + (" (forced)" if r["forced"] else ""), str(r["method"]),
          ", ".join(f"{k}={v}" for k, v in dict(r["params"]).items()),  # type: ignore[call-overload]
          f"{r['recall']:.4f} ({r['recall_queries']} q)", f"{r['mean_ms']:.2f}", f"{r['p95_ms']:.2f}",
          f"{r['exact_ms']:.0f}", f"{r['build_s']:.1f}", f"{r['load_s']:.2f}", f"{int(r['size']) / 2**20:.0f}"]  # type: ignore[call-overload]
         for i, r in enumerate(rows)])
    at_small, at_large = rows[0], rows[2]
    goals = (f"Goals: recall@10 ≥ 0.95 at {small:,} codes — **{at_small['recall']:.4f}** "
             f"({'met' if float(at_small['recall']) >= 0.95 else 'NOT met'}, {at_small['method']}); "  # type: ignore[arg-type]
             f"≤ 20 ms a query at {large:,} codes — **{at_large['mean_ms']:.2f} ms mean, {at_large['p95_ms']:.2f} ms "
             f"p95** ({'met' if float(at_large['p95_ms']) <= 20 else 'NOT met'}, {at_large['method']}).")  # type: ignore[arg-type]
    quick = " --quick" if args.quick else ""
    body = f"""Run {started:%Y-%m-%d %H:%M} UTC{quick}.

Machine: cpu {info.get('cpu', '?')}; {os.cpu_count()} logical cores; **{args.threads} thread** (torch and faiss
OpenMP), under `nice -n 19` beside another engineer's benchmarks; faiss-cpu {faiss.__version__}; numpy
{np.__version__}; load average at start {', '.join(f'{x:.2f}' for x in load_start)}, at end
{', '.join(f'{x:.2f}' for x in load_end)}.

Command:

```
OMP_NUM_THREADS={args.threads} nice -n 19 .venv/bin/python bench/neighbour_index.py{quick} --out docs/benchmarks.md
```

Data: **synthetic codes** of the built-in model's code dimension ({DIM}, float32), not codes of real images:
a mixture of 1,000 Gaussian clusters, each spread along its own 16-dimensional subspace (σ 0.35 per axis)
plus isotropic noise (σ 0.25), centres N(0, 1); {args.queries:,} queries from the same mixture, none in
the database. k = {K}, L2. Each size goes through `convlens.corpus.index.nearest` with its default
thresholds (exact ≤ {X.EXACT_MAX:,} rows, HNSW ≤ {X.HNSW_MAX:,}, IVF above) unless marked forced.
Recall@10: share of the exact top 10 (`convlens.corpus.search.knn`, float64) found, on
the first {at_small['recall_queries']} queries ({at_large['recall_queries']} at {large:,}). Query time: wall
time of one `nearest` call per query (faiss search + exact float64 re-ranking of its candidates), index in
memory, after a warm-up. Build: first call on a cold cache (k-means / graph + adding every row + writing the
file + SHA-256 of codes and index); load: first call in a "new process" (index read from its file and its
checksum verified). Exact ms/query: `knn` over the same codes, one query a call (mean of 10), for comparison.

{table}

{goals}

The unstructured case is in the tests: on 20,000 standard-normal 128-d codes
(`tests/core/test_neighbour_index.py::test_recall_at_10_on_20000_random_codes`) HNSW's recall@10 is ≥ 0.95
(0.979 when written); IVF at the same nprobe reaches only ≈ 0.73 there, which is why HNSW (no training, no
reliance on clusters) serves the middle sizes and IVF only the large ones, where codes of real images are
clustered and HNSW's build time and link memory grow.
"""
    print(body)
    if args.out:
        replace_section(args.out, HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
