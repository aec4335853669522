"""The Embedding page of the running product on a real dataset, in Chromium: TorchServe and the Streamlit dashboard
started on ``--data`` (a ``$CONVLENS_DATA_DIR``), the page opened and explored as an analyst does.

    .venv/bin/python bench/embedding_live.py --data /tmp/convlens-scale --dataset shapes1m [--out docs/benchmarks.md]

Measured, each on the browser's side of the product (so every layer is in it: the embedding endpoint reading the
cached codes and map, TorchServe, the page's Python, the component):

* the page opened → the API's answer drawn (codes and map from the cache when the corpus job has run; computed,
  with the page's progress bar, otherwise);
* the sprite sheets the hover shows thumbnails from: written by the dashboard in the background after the first
  draw, one endpoint call per 1,024 images; the time until all are on disk;
* hover → thumbnail shown, for points whose sheet is on disk (zoomed out, on the density view);
* colour by predicted class → redrawn; a click on a point (zoomed in) → the page shows the selected image; a lasso →
  the page shows the selection;

and a full-page screenshot (``docs/dashboard-embedding-1m.png`` with ``--out``). The dashboard's sheet folder is a
fresh temporary one, so the sheets are timed cold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embedding_browser import CHROMIUM, CHROMIUM_ARGS, THUMB_SHOWN, scatter_frame  # noqa: E402
from bench.timing import free_port  # noqa: E402
from tests.e2e.streamlit_ui import pick, shown  # noqa: E402

HEADING = "## The Embedding page of the running product on real images (bench/embedding_live.py)"
FRAME = 'iframe[src*="hover_scatter"]'
DRAWN = "() => window.__convlensTimes && window.__convlensTimes.drawn > 0"


def explore(url: str, dataset: str, sheets: Path, shot: Path | None, log: Any) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("API: connected").wait_for(timeout=120_000)
            started = time.perf_counter()
            page.get_by_role("link", name="Embedding").click()
            picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset")
            picker.wait_for(timeout=60_000)
            if shown(picker) != dataset:  # the value is in the combobox input, not the box's text
                pick(page, "Dataset", dataset)
            frame = scatter_frame(page)
            frame.wait_for_function(DRAWN, timeout=3_600_000, polling=200)
            out["open_s"] = time.perf_counter() - started
            caption = page.get_by_text(" images · codes of ").first.inner_text()
            out["caption"] = caption
            out["n"] = int(caption.split(" images")[0].replace(",", ""))
            log(f"opened → drawn in {out['open_s']:.1f} s: {caption}")

            # the sheets: written by the dashboard in the background after the first draw
            folder = next(iter(sheets.glob("hover_scatter/sheets/*")), None)
            total = math.ceil(out["n"] / 1024)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 3600:
                folder = folder or next(iter(sheets.glob("hover_scatter/sheets/*")), None)
                done = len(list(folder.glob("*.png"))) if folder else 0
                if done >= total:
                    break
                time.sleep(2)
            out["sheets"], out["sheets_s"] = total, time.perf_counter() - t0
            log(f"{total} sprite sheets on disk {out['sheets_s']:.0f} s after the first draw")

            box = page.locator(FRAME).bounding_box()
            assert box is not None
            left, top, _, _ = frame.evaluate("() => window.__convlens.canvasBox()")
            rng = np.random.default_rng(0)
            hovers = []
            for _ in range(16):
                x, y, i = frame.evaluate("([c, k]) => window.__convlens.find(c, k)",
                                         [int(rng.integers(0, 10)), int(rng.integers(0, 5000))])
                page.mouse.move(box["x"] + left + x - 80, box["y"] + top + y - 80)
                page.wait_for_timeout(100)
                t = time.perf_counter()
                page.mouse.move(box["x"] + left + x, box["y"] + top + y)
                frame.wait_for_function(THUMB_SHOWN, arg=i, timeout=30_000, polling="raf")
                hovers.append((time.perf_counter() - t) * 1000)
            if shot is not None:  # zoomed out, a thumbnail on show
                page.screenshot(path=str(shot), full_page=True)
            out["hover_first_ms"], out["hover_median_ms"] = hovers[0], statistics.median(hovers[1:])
            out["hover_max_ms"] = max(hovers[1:])
            log(f"hover → thumbnail: first {hovers[0]:.0f} ms, then median {out['hover_median_ms']:.0f} ms, "
                f"max {out['hover_max_ms']:.0f} ms")

            t = time.perf_counter()
            before = frame.evaluate("() => window.__convlensTimes.last")
            page.locator('[data-testid="stRadio"]').filter(has_text="Colour by").get_by_text(
                "predicted", exact=True).click()
            frame = scatter_frame(page)
            frame.wait_for_function(f"() => window.__convlensTimes && window.__convlensTimes.drawn > 0 && "
                                    f"window.__convlensTimes.last !== {before}", timeout=300_000, polling=100)
            out["recolour_s"] = time.perf_counter() - t
            log(f"colour by predicted class → redrawn in {out['recolour_s']:.1f} s")

            cw, ch = frame.evaluate("() => window.__convlens.canvasBox()")[2:]
            for _ in range(40):  # zoom in on the middle until single points are drawn
                if frame.evaluate("() => window.__convlens.mode()") == "points":
                    break
                frame.evaluate(f"() => window.__convlens.zoomAt(1.5, {cw / 2}, {ch / 2})")
                page.wait_for_timeout(80)
            out["mode_zoomed"] = frame.evaluate("() => window.__convlens.mode()")
            x, y, _ = frame.evaluate("() => window.__convlens.find(0, 0)")
            box = page.locator(FRAME).bounding_box()
            assert box is not None
            t = time.perf_counter()
            page.mouse.click(box["x"] + left + x, box["y"] + top + y)
            page.get_by_text("Selected: 1 image").wait_for(timeout=120_000)
            out["click_s"] = time.perf_counter() - t
            log(f"click on a point (zoomed in, {out['mode_zoomed']}) → the page shows it in {out['click_s']:.1f} s")

            frame.evaluate("() => window.__convlens.setMode('lasso')")
            mid = (box["x"] + left + cw / 2, box["y"] + top + ch / 2)
            t = time.perf_counter()
            page.mouse.move(mid[0] - 120, mid[1])
            page.mouse.down()
            for a in np.linspace(0, 2 * np.pi, 24):
                page.mouse.move(mid[0] + 120 * np.cos(a + np.pi), mid[1] + 90 * np.sin(a + np.pi))
            page.mouse.up()
            page.get_by_text(re.compile(r"Selected: [\d,]+ images")).first.wait_for(timeout=120_000)
            out["lasso_s"] = time.perf_counter() - t
            out["lasso_caption"] = page.get_by_text("Selected: ").first.inner_text()
            log(f"lasso → {out['lasso_caption']!r} shown in {out['lasso_s']:.1f} s")
            page.wait_for_timeout(1500)
            if shot is not None:
                page.screenshot(path=str(shot.with_name(shot.stem + "-selected.png")), full_page=True)

            again = browser.new_page(viewport={"width": 1400, "height": 1300})  # a second visit, a new tab
            again.goto(url, wait_until="domcontentloaded")
            again.get_by_text("API: connected").wait_for(timeout=120_000)
            t = time.perf_counter()
            again.get_by_role("link", name="Embedding").click()
            scatter_frame(again).wait_for_function(DRAWN, timeout=600_000, polling=100)
            out["reopen_s"] = time.perf_counter() - t
            log(f"opened again in a new tab → drawn in {out['reopen_s']:.1f} s")
        finally:
            browser.close()
    return out


def report(out: dict[str, Any], command: str) -> str:
    info = f"{os.cpu_count()} logical cores, load average at the end " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [
        ("page opened → the answer drawn (" + ("codes and map from the cache" if "codes cached · map cached" in
                                                out["caption"] else "codes or map computed") + ")",
         f"{out['open_s']:.1f} s"),
        ("the page opened again, in a new tab → drawn", f"{out['reopen_s']:.1f} s"),
        (f"all {out['sheets']:,} sprite sheets on disk (background, after the first draw)", f"{out['sheets_s']:.0f} s"),
        ("hover → thumbnail shown (median / max of 15; first)",
         f"{out['hover_median_ms']:.0f} / {out['hover_max_ms']:.0f} ms; {out['hover_first_ms']:.0f} ms"),
        ("colour by predicted class → redrawn", f"{out['recolour_s']:.1f} s"),
        ("zoomed in, click on a point → the page shows its image", f"{out['click_s']:.1f} s"),
        (f"lasso → the page shows the selection ({out['lasso_caption']})", f"{out['lasso_s']:.1f} s"),
    ]
    table = "\n".join(["| step | time |", "| --- | ---: |"] + [f"| {a} | {b} |" for a, b in rows])
    return f"""{HEADING}

Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: `{command}`; {info}. The page's caption: "{out['caption']}".

{table}

![The Embedding page at {out['n']:,} images, zoomed out (density), a point hovered](dashboard-embedding-1m.png)

![Zoomed in, coloured by predicted class, a lasso's selection below](dashboard-embedding-1m-selected.png)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the data folder ($CONVLENS_DATA_DIR) of the dataset")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, help="markdown file whose section is (re)written; the screenshot beside it")
    args = ap.parse_args(argv)
    from bench.timing import replace_section
    from convlens import registry
    from convlens.corpus import datasets as store
    from dashboard import launch
    from serve import server

    run_dir = Path(tempfile.mkdtemp(prefix="bench-embedding-live-"))
    os.environ["CONVLENS_DASHBOARD_CACHE"] = str(run_dir / "dashboard-cache")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        endpoints = tuple(dict.fromkeys((registry.info_endpoint(), "dataset")))  # what this page calls
        info = server.start(run_dir, server.Ports.free(), endpoints=endpoints,
                            env={store.DATA_DIR_ENV: str(args.data)}, timeout=600)
        try:
            dash = launch.start(free_port(), info.inference_url, info.key_file, run_dir)
            try:
                shot = args.out.parent / "dashboard-embedding-1m.png" if args.out else None
                out = explore(dash.url, args.dataset, run_dir / "dashboard-cache", shot, log)
            finally:
                launch.stop(run_dir)
        finally:
            server.stop(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    section = report(out, "python bench/embedding_live.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(section)
    if args.out:
        replace_section(args.out, HEADING, section.split("\n", 2)[2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
