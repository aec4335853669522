"""Corpus speed: CNN codes + UMAP of 10,000 built-in images, cold and cached, against the loop a user writes
by hand; peak memory of codes extraction at 10k and 50k images; the Embedding page's first render of
50,000 points in a real browser.

    .venv/bin/python bench/corpus.py --out docs/benchmarks.md      # full run (~20 min on 2 cores)
    .venv/bin/python bench/corpus.py --quick                       # 1,000 / 2,000 images, prints only

Every timed run is a fresh process (``subprocess``), so "cold" includes the Python start, importing
torch, loading the model and — for UMAP — numba's compilation of its kernels, exactly what a user waits
for. The hand-written loop is what a notebook does: for each file, PIL open → torchvision transforms →
``model(x[None])`` with a forward hook on the code layer → stack → ``umap.UMAP(random_state=0)``; same
data, same model, same layer. Peak memory is the process's ``ru_maxrss`` after ``convlens codes`` with an
empty cache. The browser measurement starts TorchServe and the dashboard, opens the Embedding page in
headless Chromium (Playwright) on a dataset whose codes and PCA map are cached, and times the navigation
until the WebGL canvas and the legend are drawn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import machine_info, markdown_table, replace_section  # noqa: E402

HEADING = "## Corpus: codes, UMAP, memory, the Embedding page (bench/corpus.py)"
PY = sys.executable
CONVLENS = str(Path(PY).with_name("convlens"))

HAND_LOOP = r'''
import sys, time, numpy as np, torch
from pathlib import Path
from PIL import Image
from torchvision import transforms
import umap
from convlens.models import load_model
started = time.perf_counter()
root = Path(sys.argv[1])
files = sorted(p for p in root.glob("*/*.png"))
net = load_model("builtin").net
tf = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
                         transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
feats = []
hook = net.code.register_forward_hook(lambda m, i, o: feats.append(o.detach().numpy().copy()))
with torch.no_grad():
    for f in files:
        net(tf(Image.open(f).convert("RGB"))[None])
hook.remove()
codes = np.concatenate(feats)
t_codes = time.perf_counter() - started
points = umap.UMAP(random_state=0).fit_transform(codes)
print(f"codes_seconds={t_codes:.2f} points={len(points)} seconds={time.perf_counter() - started:.2f}")
'''

RSS = r'''
import resource, sys
from convlens.cli import main
rc = main(["codes", sys.argv[1]])
print(f"rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
'''

WARM_SERVER = r'''
import sys, time
from convlens.corpus.projection import warm_up
from convlens.corpus import datasets as store
from convlens.models import load_model
from convlens.pipeline import run
t = warm_up()   # what the dataset endpoint's worker does at start
loaded = load_model("builtin")
started = time.perf_counter()
[out] = run(loaded, "embedding", [{}], params={"dataset": sys.argv[1], "projection": "umap"})
print(f"warm_up={t:.2f} points={len(out.points)} seconds={time.perf_counter() - started:.2f}")
'''


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return seconds, out.stdout


def value(text: str, key: str) -> float:
    match = re.findall(rf"{key}=([0-9.]+)", text)
    if not match:
        raise ValueError(f"{key}= not found in {text!r}")
    return float(match[-1])


def clear_cache(data: Path) -> None:
    shutil.rmtree(data / ".cache", ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser_first_render(data: Path, dataset: str, points: int, log=print) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Open the Embedding page on ``dataset`` (codes and PCA map cached) and time it until drawn."""
    from playwright.sync_api import sync_playwright

    from dashboard import launch
    from serve import server

    run_dir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    info = server.start(run_dir, server.Ports.free(), env={"CONVLENS_DATA_DIR": str(data)})
    try:
        dash = launch.start(free_port(), info.inference_url, info.key_file, run_dir)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(dash.url, wait_until="domcontentloaded")
                page.get_by_text("API: connected").wait_for(timeout=120_000)
                page.get_by_role("link", name="Embedding").click()
                page.get_by_text("images ·").first.wait_for(timeout=600_000)  # the default map of the first set
                page.locator('[data-testid="stPlotlyChart"] canvas').first.wait_for(timeout=600_000)
                page.get_by_text("PCA", exact=True).click()  # PCA of the first set (cached), then the large set
                page.wait_for_timeout(3000)
                page.locator('[data-testid="stPlotlyChart"] canvas').first.wait_for(timeout=600_000)
                page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
                started = time.perf_counter()
                page.get_by_role("option", name=dataset).click()
                page.get_by_text(f"{points:,} images").wait_for(timeout=600_000)
                # drawn = the chart on the page holds every point (the caption arrives before the new chart)
                page.wait_for_function(
                    """n => Array.from(document.querySelectorAll('.js-plotly-plot')).some(gd =>
                         (gd.data || []).reduce((k, t) => k + (t.x ? t.x.length : 0), 0) === n
                         && gd.querySelector('canvas'))""", arg=points, timeout=600_000)
                first_render = time.perf_counter() - started
                log(f"first render of {points} points: {first_render:.1f} s")
                box = page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()
                assert box is not None
                started = time.perf_counter()
                for k in range(20):  # hover sweeps: plotly answers each hover on 50k WebGL points
                    page.mouse.move(box["x"] + 100 + 30 * k, box["y"] + 300)
                    page.wait_for_timeout(1)
                hover = (time.perf_counter() - started) / 20
                page.screenshot(path=str(ROOT / "docs" / "dashboard-embedding-50k.png"))
                browser.close()
        finally:
            launch.stop(run_dir)
    finally:
        server.stop(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"first_render": first_render, "hover": hover}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="markdown file whose corpus section is (re)written")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, help="data directory (default: a temporary one)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    small, large = (1000, 2000) if args.quick else (10_000, 50_000)
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    env = {**os.environ, "CONVLENS_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    info = machine_info(("umap-learn", "numba", "scikit-learn"))
    rows: list[list[str]] = []
    log = print

    def make(name: str, n: int) -> float:
        if (data / name).is_dir():
            return 0.0
        seconds, _ = timed([CONVLENS, "dataset", "builtin", name, "--n", str(n)], env)
        log(f"{name}: {n} images generated in {seconds:.1f} s")
        return seconds

    a, b = f"shapes{small // 1000}k", f"shapes{large // 1000}k"
    gen_small = make(a, small)

    clear_cache(data)
    cold, out = timed([CONVLENS, "project", a, "--method", "umap"], env)
    log(f"cold convlens project: {cold:.1f} s ({out.strip().splitlines()[-1]})")
    reopen, out = timed([CONVLENS, "project", a, "--method", "umap"], env)
    reopen_inner = value(out, "call_seconds")
    log(f"cached reopen: process {reopen:.1f} s, the call on a loaded model {reopen_inner:.3f} s")
    clear_cache(data)
    warm_total, out = timed([PY, "-c", WARM_SERVER, a], env)
    warm = value(out, "seconds")
    compile_s = value(out, "warm_up")
    log(f"after the server's UMAP warm-up ({compile_s:.1f} s): codes + UMAP {warm:.1f} s")
    hand, out = timed([PY, "-c", HAND_LOOP, str(data / a)], env)
    hand_codes = value(out, "codes_seconds")
    log(f"hand-written loop: {hand:.1f} s (codes {hand_codes:.1f} s)")
    clear_cache(data)
    codes_cold, out = timed([CONVLENS, "codes", a], env)
    codes_inner = value(out, "seconds")

    rows.append([f"codes + UMAP, {small:,} images, cold process (numba compile included)", f"{cold:.1f} s",
                 "≤ 30 s"])
    rows.append([f"codes + UMAP after the server's start-up warm-up (compile {compile_s:.1f} s, paid once)",
                 f"{warm:.1f} s", "≤ 30 s"])
    rows.append(["cached reopen (`convlens project` again): the call on a loaded model / whole process",
                 f"{reopen_inner:.3f} s / {reopen:.1f} s", "< 1 s"])
    rows.append(["hand-written loop (per-image forward + umap), cold process", f"{hand:.1f} s", ""])
    rows.append(["ratio hand-written / ConvLens, both cold, end to end", f"{hand / cold:.2f}×", "≥ 3×"])
    rows.append(["codes alone: ConvLens (batched, cold cache) vs hand loop",
                 f"{codes_inner:.1f} s vs {hand_codes:.1f} s ({hand_codes / codes_inner:.1f}×)", ""])

    rss = {}
    gen_large = make(b, large)
    for name, n in ((a, small), (b, large)):
        clear_cache(data)
        _, out = timed([PY, "-c", RSS, name], env)
        rss[n] = value(out, "rss_mb")
        log(f"peak RSS of convlens codes on {n}: {rss[n]:.0f} MB")
    rows.append([f"peak RSS of `convlens codes`, {small:,} / {large:,} images",
                 f"{rss[small]:.0f} MB / {rss[large]:.0f} MB", "bounded by the batch"])

    browser = None
    if not args.no_browser:
        # the page's inputs, computed the way the server would (same cache keys): codes + PCA of the large set
        for name, method in ((b, "pca"), (a, "pca"), (a, "umap")):
            timed([CONVLENS, "project", name, "--method", method], env)
        browser = browser_first_render(data, b, large)
        rows.append([f"Embedding page, {large:,} points (cached PCA map): click → scatter drawn",
                     f"{browser['first_render']:.1f} s", "interactive"])
        rows.append([f"Embedding page, {large:,} points: mean time per hover move", f"{browser['hover'] * 1e3:.0f} ms",
                     ""])
    table = markdown_table(["measurement", "result", "goal"], rows)
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    body = f"""Run {dt.date.today().isoformat()} with `python bench/corpus.py{' --quick' if args.quick else ''}`.
Built-in model, built-in generator images (64 px; generating {small:,} took {gen_small:.0f} s and
{large:,} took {gen_large:.0f} s, not counted below). Every timed run is a fresh process; "cold" means an
empty codes cache *and* a process that has not compiled UMAP's numba kernels yet.

{table}

{machine}

Notes: the dataset endpoint's worker compiles UMAP's kernels in the background when it starts
(`warm_umap: true` in `serve/model-config/dataset.yaml`), so on the server the first map costs the
"after warm-up" figure; the command line pays the compilation in every new process. The hand-written
loop's codes come from one forward per image; ConvLens batches (128 at 64 px), decodes the next batch on a
thread while the current one runs, and folds BatchNorm into the convolutions of an inference copy.
"""
    print(body)
    if args.out:
        replace_section(args.out, HEADING, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
