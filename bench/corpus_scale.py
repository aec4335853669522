"""The corpus at scale, end to end: N built-in images generated → CNN codes (in process, and on a local Ray
cluster) → UMAP map → the map reopened from the cache → the neighbour index on the real codes → the map's
trustworthiness; wall time and peak memory (RSS) of every stage.

    .venv/bin/python bench/corpus_scale.py --n 100000 --ray-cpus 2 --out docs/benchmarks.md
    make bench-corpus-1m      # 100,000 then 1,000,000 images (about 2 hours on 2 cores; ~17 GB of disk at 1M)

Every stage is the product's own command in a fresh process (``convlens dataset builtin``, ``convlens codes``,
``convlens project``), so a time includes the Python start, importing torch and loading the model, as a user
waits for them; peak RSS is that process's own (``wait4``). The codes and map caches are emptied before each
cold stage; the dataset is reused when it already holds N images (``--fresh`` regenerates it). The data lives
under ``--data`` (default ``$CONVLENS_BENCH_DIR`` or ``/tmp/convlens-scale``), never the project's data folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.timing import machine_info, markdown_table, replace_section  # noqa: E402

HEADING = "## Corpus at scale: from images on disk to a finished map (bench/corpus_scale.py)"
BIN = Path(sys.executable).parent
TRUST_SAMPLE, TRUST_K = 10_000, 10


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    peak_mb: float
    out: str


def stage(name: str, args: list[str], env: dict[str, str]) -> Stage:
    """One command in a fresh process; its stderr (progress) goes to ours. Raises on a non-zero exit."""
    print(f"== {name}: {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{out}")
    print(out.rstrip(), file=sys.stderr)
    return Stage(name, seconds, usage.ru_maxrss / 1024, out)


def value(out: str, key: str) -> str:
    found = re.findall(rf"\b{key}=(\S+)", out)
    if not found:
        raise SystemExit(f"no {key}= in the output:\n{out}")
    return str(found[-1])


@contextmanager
def local_ray(cpus: int, env: dict[str, str]) -> Iterator[str]:
    """A local Ray head with ``cpus`` CPUs (as many model actors), stopped afterwards; yields its address."""
    port = 6390
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", f"--num-cpus={cpus}",
                    "--include-dashboard=false", "--object-store-memory=500000000", "--disable-usage-stats"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, check=False, stdout=subprocess.DEVNULL)


def trustworthiness_of(codes: np.ndarray, points: np.ndarray, seed: int = 0) -> float:
    """scikit-learn's trustworthiness (k = 10) of the map on a seeded 10,000-point subsample."""
    from sklearn.manifold import trustworthiness

    rows = np.sort(np.random.default_rng(seed).choice(len(codes), min(TRUST_SAMPLE, len(codes)), replace=False))
    return float(trustworthiness(np.asarray(codes[rows], dtype=np.float32), points[rows], n_neighbors=TRUST_K))


def run(n: int, name: str, data: Path, ray_cpus: int, fresh: bool) -> tuple[list[Stage], dict[str, object]]:
    env = {**os.environ, "CONVLENS_DATA_DIR": str(data)}
    convlens = str(BIN / "convlens")
    stages: list[Stage] = []
    if fresh:
        shutil.rmtree(data / name, ignore_errors=True)
    if not (data / name).is_dir():
        stages.append(stage("images generated", [convlens, "dataset", "builtin", name, "--n", str(n)], env))
    cache = data / ".cache"
    for kind in ("codes", "projections"):
        shutil.rmtree(cache / kind, ignore_errors=True)
    codes = stage("codes, in process", [convlens, "codes", name], env)
    stages.append(codes)
    key = value(codes.out, "cache")
    if ray_cpus:
        shutil.rmtree(cache / "codes", ignore_errors=True)
        ray_env = {**env, "RAY_AUTH_MODE": "token"}  # the head's token (~/.ray) for a client of an explicit address
        with local_ray(ray_cpus, ray_env):  # found by ``--ray auto``, as a user on the head node finds it
            stages.append(stage(f"codes, local Ray cluster ({ray_cpus} actors)",
                                [convlens, "codes", name, "--ray", "auto"], ray_env))
        assert value(stages[-1].out, "cache") == key, "the Ray path must fill the same cache entry"
    points_dir = data / f"{name}-points"
    stages.append(stage("UMAP map (cold)", [convlens, "project", name, "--method", "umap", "--out", str(points_dir)],
                        env))
    reopen = stage("map reopened from the cache", [convlens, "project", name, "--method", "umap"], env)
    stages.append(reopen)
    vectors = np.load(cache / "codes" / f"{key}.npy", mmap_mode="r")
    points = np.load(points_dir / "points.npy")
    extra: dict[str, object] = {
        "dim": int(vectors.shape[1]), "reopen_call_s": float(value(reopen.out, "call_seconds")),
        "trustworthiness": trustworthiness_of(vectors, points),
        "images_to_map_s": sum(s.seconds for s in stages if s.name in ("codes, in process", "UMAP map (cold)"))}
    from bench.neighbour_index import measure_file
    from convlens.corpus.index import method_for

    queries = np.asarray(vectors[np.random.default_rng(1).choice(len(vectors), 200, replace=False)])
    force = "hnsw" if method_for(n) == "exact" else None  # a small run still measures an index
    extra["index"] = measure_file(cache / "codes" / f"{key}.npy", queries, 200,
                                  log=lambda m: print(m, file=sys.stderr), force=force)
    return stages, extra


def report(n: int, stages: list[Stage], extra: dict[str, object], command: str) -> str:
    index = extra["index"]
    assert isinstance(index, dict)
    table = markdown_table(["stage", "wall time", "peak RSS"],
                           [[s.name, f"{s.seconds:,.1f} s", f"{s.peak_mb:,.0f} MB"] for s in stages], "lrr")
    info = machine_info()
    return f"""### {n:,} images

Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `{command}`; cpu {info.get('cpu', '?')}, {os.cpu_count()} logical
cores, load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}.

{table}

- Images on disk to a finished map, in process (codes + cold map): **{extra['images_to_map_s']:,.0f} s**; the
  map reopened from the cache: {extra['reopen_call_s']:.2f} s in the call (the rest of that row is the process
  start and the model load, which a running server has already paid).
- Trustworthiness (k = {TRUST_K}, {TRUST_SAMPLE:,}-point subsample, codes of {extra['dim']} dimensions):
  **{extra['trustworthiness']:.4f}**.
- Neighbour index on these codes: {index['method']}, recall@10 {index['recall']:.4f} ({index['recall_queries']}
  queries, against exact search), {index['mean_ms']:.2f} ms mean / {index['p95_ms']:.2f} ms p95 a query, built
  in {index['build_s']:.1f} s.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="images (repeatable; default 100000)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CONVLENS_BENCH_DIR", "/tmp/convlens-scale")))
    ap.add_argument("--ray-cpus", type=int, default=0, help="also compute the codes on a local Ray cluster")
    ap.add_argument("--name", help="the dataset's name (one --n only; default scale<N>)")
    ap.add_argument("--fresh", action="store_true", help="regenerate the dataset even when it exists")
    ap.add_argument("--out", type=Path, help="markdown file whose section is (re)written")
    args = ap.parse_args(argv)
    sizes = args.n or [100_000]
    if args.name and len(sizes) > 1:
        ap.error("--name names one dataset: give one --n with it")
    args.data.mkdir(parents=True, exist_ok=True)
    command = "python bench/corpus_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for n in sizes:
        stages, extra = run(n, args.name or f"scale{n}", args.data, args.ray_cpus, args.fresh)
        section = report(n, stages, extra, command)
        print(section)
        if args.out:
            write_size(args.out, n, section)
    return 0


def write_size(path: Path, n: int, section: str) -> None:
    """Replace this size's ``### N images`` part of the section in ``path``, keeping the other sizes' parts."""
    text = path.read_text() if path.exists() else ""
    start = text.find(HEADING + "\n")
    body = ""
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        body = text[start + len(HEADING):end if end >= 0 else len(text)]
    parts = {int(m.group(1).replace(",", "")): m.group(0)
             for m in re.finditer(r"^### ([\d,]+) images\n.*?(?=^### |\Z)", body, re.M | re.S)}
    parts[n] = section
    replace_section(path, HEADING, "\n".join(parts[k].strip() + "\n" for k in sorted(parts)))


if __name__ == "__main__":
    raise SystemExit(main())
