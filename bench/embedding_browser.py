"""The Embedding page's scatter in Chromium at 100k and 1M points: first render, frame times while panning and
zooming, hover → image time.

    .venv/bin/python bench/embedding_browser.py [--sizes 100000,1000000] [--out docs/benchmarks.md]

The harness is the component itself (``dashboard/hover_scatter/index.html``, unchanged) in an iframe of a static
page that speaks the Streamlit component protocol as Streamlit's frontend does (componentReady → render with the
arguments), served by a local HTTP server from the folder the dashboard serves it from: the points' columns file
written by the page's own code (:func:`dashboard.hover_scatter.write_columns`) and sprite sheets of real size (one
2048×512 PNG of 1,024 32-px tiles, served for every sheet number). Streamlit itself is left out: what it adds is
the page's Python (timed here too: decoding the API's base64 columns and writing the file) and one websocket
message of a few kB of arguments.

Synthetic points: ``n`` points in 10 labelled clusters of Gaussian blobs (90% predicted correctly, confidence in
(0, 1)). Chromium: Debian's ``/usr/bin/chromium``, headless, no GPU (the canvas is drawn by the CPU).

* first render: from the harness's navigation start to the component's first drawn frame (its columns fetched,
  coloured, filtered, binned and drawn), both on the browser's clock (``performance.timeOrigin``);
* frames: while the mouse drags the view (Pan mode, 60 moves) and the wheel zooms (10 notches in, 10 out), the
  gaps between consecutive ``requestAnimationFrame`` callbacks (what a user sees) and each frame's draw time;
* hover → image: the mouse moves onto a point; the time until the tooltip shows that point's thumbnail with its
  image decoded (the first hover of a sheet fetches it; later hovers of that sheet are answered from memory),
  measured from Python (so it includes Playwright's round trips), zoomed out (density view) and zoomed in (points).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import http.server
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CONVLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GOALS = {"first_render_s": 5.0, "hover_ms": 150.0, "frame_ms": 200.0}
VIEWPORT = {"width": 1280, "height": 900}
SHEET_KEY = "bench"
PALETTE = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572", "#17bebb", "#c5283d", "#6d597a",
           "#3a5a40")  # the page's first ten colours

HARNESS = """<!doctype html>
<html><head><meta charset="utf-8"><style>body{margin:0} iframe{border:0;width:100%}</style></head>
<body><iframe id="c" src="index.html"></iframe>
<script>
const f = document.getElementById("c"), ARGS = __ARGS__;
window.addEventListener("message", ev => {
  const m = ev.data;
  if (!m || !m.isStreamlitMessage) return;
  if (m.type === "streamlit:componentReady") f.contentWindow.postMessage({type: "streamlit:render", args: ARGS}, "*");
  if (m.type === "streamlit:setFrameHeight") f.style.height = m.height + "px";
  if (m.type === "streamlit:setComponentValue") window.__value = m.value;
});
</script></body></html>
"""


def synthetic(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` points in 10 labelled clusters (each 5 Gaussian blobs), the columns the embedding answers."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 10, n).astype(np.uint16)
    blob = rng.integers(0, 5, n)
    centres = rng.normal(0, 10, (10, 5, 2)).astype(np.float32)
    spread = rng.uniform(0.3, 1.5, (10, 5)).astype(np.float32)
    xy = centres[label, blob] + rng.normal(0, 1, (n, 2)).astype(np.float32) * spread[label, blob, None]
    wrong = rng.random(n) < 0.1
    predicted = np.where(wrong, rng.integers(0, 10, n), label).astype(np.uint16)
    return {"x": np.ascontiguousarray(xy[:, 0]), "y": np.ascontiguousarray(xy[:, 1]), "label": label,
            "predicted": predicted, "correct": (predicted == label).astype(np.uint8),
            "confidence": rng.beta(5, 2, n).astype(np.float32)}


def sheet_png() -> bytes:
    """One sprite sheet of real size: 1,024 tiles of 32 px, 64 to a row, each a different grey."""
    sheet = Image.new("RGB", (64 * 32, 16 * 32))
    for k in range(1024):
        sheet.paste(((k * 37) % 256, (k * 11) % 256, (k * 5) % 256), ((k % 64) * 32, (k // 64) * 32,
                                                                       (k % 64 + 1) * 32, (k // 64 + 1) * 32))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files of the served folder; every ``sheets/<key>/<k>.png`` is the one synthetic sheet."""

    sheet = b""

    def do_GET(self) -> None:  # noqa: N802 — the stdlib's name
        if self.path.startswith(f"/sheets/{SHEET_KEY}/") and self.path.endswith(".png"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(self.sheet)))
            self.end_headers()
            self.wfile.write(self.sheet)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the stdlib's signature
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    Handler.sheet = sheet_png()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def page_side(columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the page's Python does with an answer: base64 columns → arrays (client.results) → the columns file."""
    from dashboard.hover_scatter import write_columns

    encoded = {k: base64.b64encode(v.tobytes()).decode() for k, v in columns.items()}
    started = time.perf_counter()
    decoded = {k: np.frombuffer(base64.b64decode(v), dtype=columns[k].dtype) for k, v in encoded.items()}
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    data = write_columns(decoded)
    write_s = time.perf_counter() - started
    row = {"label": "horizontal_stripes", "predicted": "horizontal_stripes", "file": "horizontal_stripes/123456.png"}
    old_bytes = (len(json.dumps([row])) + len(json.dumps([[1.2345678, -2.3456789]]))) * len(columns["x"])
    file = Path(os.environ["CONVLENS_DASHBOARD_CACHE"]) / "hover_scatter" / data["url"]
    return {"decode_s": decode_s, "write_s": write_s, "answer_mb": sum(len(v) for v in encoded.values()) / 1e6,
            "file_mb": file.stat().st_size / 1e6, "old_answer_mb": old_bytes / 1e6, "data": data}


def args_for(data: dict[str, Any], names: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """The component's arguments as the page gives them, coloured by label; ``names``: each column's class names
    by code (default class0 … class9)."""
    from dashboard.hover_scatter import scatter_args

    names = names or {column: {str(k): f"class{k}" for k in range(10)} for column in ("label", "predicted")}
    labels = sorted(names["label"].items(), key=lambda kv: int(kv[0]))
    colour = {"column": "label", "colours": [PALETTE[k % len(PALETTE)] for k in range(len(labels))],
              "legend": [{"name": name, "colour": PALETTE[k % len(PALETTE)]} for k, (_, name) in enumerate(labels)]}
    return scatter_args(data, colour, names, SHEET_KEY, {"label": None, "predicted": None, "confidence": [0.0, 1.0]})


def real(name: str) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]]]:
    """The columns and class names the Embedding page gets for dataset ``name`` (under ``$CONVLENS_DATA_DIR``):
    the product's own embedding technique on the built-in model, its codes and UMAP map computed or read from the
    cache."""
    from convlens.models import load_model
    from convlens.techniques.corpus.embedding import EmbeddingParams, embedding

    started = time.perf_counter()
    corpus = embedding(load_model("builtin"), {}, EmbeddingParams(dataset=name, compact=True))
    names: dict[str, dict[str, str]] = {"label": {}, "predicted": {}}
    for item in corpus.items:
        names[str(item["column"])][str(item["code"])] = str(item["name"])
    print(f"{name}: {len(corpus.columns['x']):,} images' columns in {time.perf_counter() - started:.1f} s "
          f"(codes cached: {bool(corpus.scalars['codes_cached'])}, map cached: "
          f"{bool(corpus.scalars['projection_cached'])})", flush=True)
    return dict(corpus.columns), names


RAF_RECORDER = """() => { window.__raf = []; window.__rafOn = true;
  const tick = t => { window.__raf.push(t); if (window.__rafOn) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""
RAF_STOP = """() => { window.__rafOn = false; const t = window.__raf, gaps = [];
  for (let k = 1; k < t.length; k++) gaps.push(t[k] - t[k - 1]); return gaps; }"""
THUMB_SHOWN = """(i) => { const tip = document.getElementById('tip'), im = document.getElementById('thumb');
  return tip.style.display === 'block' && tip.dataset.index === String(i) && im.complete && im.naturalWidth > 0
         && im.getAttribute('src') !== null; }"""


def measure(n: int, base: str, browser: Any, columns: dict[str, np.ndarray], log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n}
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{base}/harness-{n}.html")
        frame = None
        deadline = time.monotonic() + 120
        while frame is None and time.monotonic() < deadline:
            frame = next((f for f in page.frames if f.url.endswith("/index.html")), None)
            page.wait_for_timeout(10)
        assert frame is not None
        frame.wait_for_function("() => window.__convlensTimes && window.__convlensTimes.drawn > 0", timeout=120_000,
                                polling="raf")
        t = frame.evaluate("""() => { const t = window.__convlensTimes;
            return {drawn: performance.timeOrigin + t.drawn, received: performance.timeOrigin + t.received,
                    loaded: performance.timeOrigin + t.loaded, first_frame: window.__convlensFrames[0]}; }""")
        start = page.evaluate("() => performance.timeOrigin")
        out["first_render_s"] = (t["drawn"] - start) / 1000
        out["fetch_s"] = (t["loaded"] - t["received"]) / 1000
        out["prepare_draw_s"] = (t["drawn"] - t["loaded"]) / 1000
        out["first_frame_ms"] = t["first_frame"]
        out["mode_home"] = frame.evaluate("() => window.__convlens.mode()")
        log(f"  {n:,}: first render {out['first_render_s']:.2f} s (fetch {out['fetch_s']:.2f} s, prepare+draw "
            f"{out['prepare_draw_s']:.2f} s; the frame {out['first_frame_ms']:.0f} ms), view: {out['mode_home']}")
        box = page.locator("iframe").bounding_box()
        cx, cy, cw, ch = frame.evaluate("() => window.__convlens.canvasBox()")
        ox, oy = box["x"] + cx, box["y"] + cy
        mid = (ox + cw / 2, oy + ch / 2)

        def interaction(name: str, act: Any) -> None:
            frame.evaluate("() => { window.__convlensFrames.length = 0; }")
            frame.evaluate(RAF_RECORDER)
            act()
            page.wait_for_timeout(300)
            gaps = frame.evaluate(RAF_STOP)
            draws = frame.evaluate("() => window.__convlensFrames.slice()")
            out[f"{name}_gap_max_ms"] = max(gaps)
            out[f"{name}_gap_p95_ms"] = float(np.percentile(gaps, 95))
            out[f"{name}_draw_median_ms"] = statistics.median(draws) if draws else 0.0
            out[f"{name}_draw_max_ms"] = max(draws) if draws else 0.0
            out[f"{name}_frames"] = len(draws)
            out[f"{name}_over"] = sum(g > GOALS["frame_ms"] for g in gaps)
            out[f"{name}_gaps"] = len(gaps)
            log(f"  {n:,} {name}: {len(draws)} frames drawn, draw median {out[f'{name}_draw_median_ms']:.0f} ms, "
                f"max {out[f'{name}_draw_max_ms']:.0f} ms; frame gaps p95 {out[f'{name}_gap_p95_ms']:.0f} ms, "
                f"max {out[f'{name}_gap_max_ms']:.0f} ms ({out[f'{name}_over']} of {len(gaps)} over "
                f"{GOALS['frame_ms']:.0f} ms)")

        def pan() -> None:
            frame.evaluate("() => window.__convlens.setMode('pan')")
            page.mouse.move(*mid)
            page.mouse.down()
            for k in range(60):
                page.mouse.move(mid[0] + 4 * k, mid[1] + 2 * k)
            page.mouse.up()
            frame.evaluate("() => window.__convlens.setMode('lasso')")

        def wheel() -> None:
            page.mouse.move(*mid)
            for _ in range(10):
                page.mouse.wheel(0, -150)
                page.wait_for_timeout(16)
            for _ in range(10):
                page.mouse.wheel(0, 150)
                page.wait_for_timeout(16)

        frame.evaluate("() => window.__convlens.home()")
        interaction("pan", pan)
        frame.evaluate("() => window.__convlens.home()")
        interaction("zoom", wheel)

        rng = np.random.default_rng(1)

        def hovers(tag: str, count: int) -> None:
            times, first = [], None
            for _ in range(count):
                for _ in range(200):  # a point drawn in view (not hidden under another)
                    i = int(rng.integers(0, n))
                    px, py = frame.evaluate("i => window.__convlens.screenOf(i)", i)
                    if 8 < px < cw - 8 and 8 < py < ch - 8 and frame.evaluate(
                            "([x, y, i]) => window.__convlens.nearest(x, y) === i", [px, py, i]):
                        break
                page.mouse.move(ox + cw / 2, oy - 40)  # off the plot (over the toolbar): the tooltip goes
                frame.wait_for_function("() => document.getElementById('tip').style.display === 'none'",
                                        timeout=5_000)
                started = time.perf_counter()
                page.mouse.move(ox + px, oy + py)
                frame.wait_for_function(THUMB_SHOWN, arg=i, timeout=10_000, polling="raf")
                took = (time.perf_counter() - started) * 1000
                if first is None:
                    first = took
                else:
                    times.append(took)
            out[f"hover_{tag}_first_ms"] = first
            out[f"hover_{tag}_median_ms"] = statistics.median(times)
            out[f"hover_{tag}_max_ms"] = max(times)
            log(f"  {n:,} hover ({tag}): first {first:.0f} ms (fetches its sheet), then median "
                f"{out[f'hover_{tag}_median_ms']:.0f} ms, max {out[f'hover_{tag}_max_ms']:.0f} ms")

        frame.evaluate("() => window.__convlens.home()")
        page.wait_for_timeout(200)
        hovers("density" if out["mode_home"] == "density" else "points", 15)
        for _ in range(40):  # zoom in on the centre until single points are drawn
            if frame.evaluate("() => window.__convlens.mode()") == "points":
                break
            frame.evaluate(f"() => window.__convlens.zoomAt(1.5, {cw / 2}, {ch / 2})")
            page.wait_for_timeout(50)
        out["points_in_view"] = int(frame.evaluate("() => document.getElementById('plot').dataset.visible"))
        out["points_frame_ms"] = frame.evaluate("() => window.__convlensFrames[window.__convlensFrames.length - 1]")
        log(f"  {n:,} zoomed in: {out['points_in_view']:,} points in view drawn as points in "
            f"{out['points_frame_ms']:.0f} ms")
        if out["mode_home"] == "density":
            hovers("points", 15)
        # a lasso over the middle of the zoomed-in view selects the points inside it
        started = time.perf_counter()
        page.mouse.move(mid[0] - 100, mid[1] - 80)
        page.mouse.down()
        for a in np.linspace(0, 2 * np.pi, 24):
            page.mouse.move(mid[0] + 100 * np.cos(a + np.pi), mid[1] + 80 * np.sin(a + np.pi))
        page.mouse.up()
        page.wait_for_function("() => window.__value && window.__value.selected", timeout=10_000)
        out["lasso_ms"] = (time.perf_counter() - started) * 1000
        out["lasso_selected"] = len(page.evaluate("() => window.__value.selected"))
        log(f"  {n:,} lasso: {out['lasso_selected']:,} selected, {out['lasso_ms']:.0f} ms from the first move")
    finally:
        page.close()
    return out


WEBGL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><script src="plotly.min.js"></script></head>
<body style="margin:0"><div id="plot" style="width:1280px;height:620px"></div><script>
const D = __DATA__;
fetch(D.url).then(r => r.arrayBuffer()).then(buf => {
  const x = new Float32Array(buf, D.columns.x[0], D.n), y = new Float32Array(buf, D.columns.y[0], D.n);
  const label = new Uint16Array(buf, D.columns.label[0], D.n), traces = [];
  for (let k = 0; k < 10; k++) {
    const xs = [], ys = [];
    for (let i = 0; i < D.n; i++) if (label[i] === k) { xs.push(x[i]); ys.push(y[i]); }
    traces.push({type: "scattergl", mode: "markers", x: new Float32Array(xs), y: new Float32Array(ys),
                 hoverinfo: "none", marker: {size: 4, opacity: 0.8}});
  }
  const gd = document.getElementById("plot"), t0 = performance.now();
  Plotly.newPlot(gd, traces, {margin: {l: 10, r: 10, t: 10, b: 10}, showlegend: false, dragmode: "pan",
                              xaxis: {visible: false}, yaxis: {visible: false}}).then(async () => {
    window.__drawn = performance.now() - t0;
    const times = [], r = gd._fullLayout.xaxis.range.slice(), w = r[1] - r[0];
    for (let k = 1; k <= 10; k++) {
      const s = performance.now();
      await Plotly.relayout(gd, {"xaxis.range": [r[0] + k * w / 50, r[1] + k * w / 50]});
      await new Promise(ok => requestAnimationFrame(() => requestAnimationFrame(ok)));
      times.push(performance.now() - s);
    }
    window.__pan = times;
  });
});
</script></body></html>
"""


def webgl_reference(n: int, data: dict[str, Any], folder: Path, base: str, browser: Any, log: Any) -> dict[str, float]:
    """The renderer the page had before: Plotly's WebGL scatter (scattergl, one trace per label, as the old
    component drew it) over the same points, typed arrays given directly (no JSON): its first draw, and the time
    each of 10 pans (a relayout, then two animation frames) takes."""
    import plotly

    shutil.copyfile(Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    (folder / f"webgl-{n}.html").write_text(WEBGL_PAGE.replace("__DATA__", json.dumps(data)))
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{base}/webgl-{n}.html")
        page.wait_for_function("() => window.__pan && window.__pan.length === 10", timeout=600_000)
        drawn, pans = page.evaluate("() => [window.__drawn, window.__pan]")
    finally:
        page.close()
    out = {"webgl_draw_ms": drawn, "webgl_pan_median_ms": statistics.median(pans), "webgl_pan_max_ms": max(pans)}
    log(f"  {n:,} WebGL (plotly scattergl): first draw {drawn:.0f} ms, a pan {out['webgl_pan_median_ms']:.0f} ms "
        f"(median of 10, max {out['webgl_pan_max_ms']:.0f} ms)")
    return out


CHOICE = ("Chosen: the canvas-2D renderer. Without a GPU, WebGL is drawn by the CPU too (SwiftShader) and "
          "Plotly redraws every point on each pan, while the canvas bins at most 125,000 points a frame "
          "(progressive passes) and draws density as one image. A server-side renderer (datashader images per "
          "view) was not measured: every pan and zoom would wait for a round trip to the dashboard's Python and an "
          "image render, where the canvas redraws from the typed arrays already in the browser.")

STREAMLIT_APP = """import json, sys
sys.path.insert(0, __ROOT__)
import streamlit as st
from dashboard.hover_scatter import hover_scatter
chosen = hover_scatter(json.loads(open(__ARGS__).read()), key="chart")
st.write(f"selected: {len(chosen)}")
"""


def scatter_frame(page: Any, timeout_s: float = 300.0) -> Any:
    """The scatter component's frame in a Streamlit page, once it is there (polled every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = next((f for f in page.frames if "hover_scatter" in f.url), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(10)
    raise TimeoutError(f"the scatter's frame did not appear in {timeout_s:.0f} s")


def through_streamlit(n: int, args: dict[str, Any], folder: Path, browser: Any, log: Any, visits: int = 3
                      ) -> dict[str, float]:
    """The component in a real Streamlit app (given the same arguments): seconds from opening the app to the points
    drawn (a new browser context each visit: Streamlit's frontend is fetched again), and from a click on a point to
    the app's rerun showing the selection."""
    import subprocess
    import urllib.request

    from bench.timing import free_port

    saved = folder / f"args-{n}.json"
    saved.write_text(json.dumps(args))
    app = folder / f"app-{n}.py"
    app.write_text(STREAMLIT_APP.replace("__ROOT__", repr(str(ROOT))).replace("__ARGS__", repr(str(saved))))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):  # noqa: S310 — loopback
                    break
            except OSError:
                time.sleep(0.5)
        opened, clicked, phases = [], [], []
        for _ in range(visits):
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            started = time.perf_counter()
            page.goto(url)
            frame = scatter_frame(page)
            frame.wait_for_function("() => window.__convlensTimes && window.__convlensTimes.drawn > 0",
                                    timeout=300_000, polling="raf")
            opened.append(time.perf_counter() - started)
            t = frame.evaluate("""() => { const t = window.__convlensTimes, o = performance.timeOrigin;
                return [o, o + t.received, o + t.loaded, o + t.drawn]; }""")
            origin = page.evaluate("() => performance.timeOrigin")
            phases.append([(t[0] - origin) / 1000, (t[2] - t[1]) / 1000, (t[3] - t[2]) / 1000])
            x, y, _ = frame.evaluate("() => window.__convlens.find(2, 0)")
            box = page.locator('iframe[src*="hover_scatter"]').bounding_box()
            left, top, _, _ = frame.evaluate("() => window.__convlens.canvasBox()")
            started = time.perf_counter()
            page.mouse.click(box["x"] + left + x, box["y"] + top + y)
            page.get_by_text("selected: 1").wait_for(timeout=60_000)
            clicked.append(time.perf_counter() - started)
            context.close()
        middle = sorted(range(visits), key=lambda k: opened[k])[visits // 2]
        out = {"st_open_s": statistics.median(opened), "st_open_max_s": max(opened),
               "st_click_s": statistics.median(clicked), "st_frame_s": phases[middle][0],
               "st_fetch_s": phases[middle][1], "st_draw_s": phases[middle][2]}
        log(f"  {n:,} through Streamlit: opened and drawn in {out['st_open_s']:.2f} s (median of {visits}, max "
            f"{out['st_open_max_s']:.2f} s; the component's frame opened at {out['st_frame_s']:.2f} s, its columns "
            f"fetched in {out['st_fetch_s']:.2f} s, drawn in {out['st_draw_s']:.2f} s); a click → the app's rerun "
            f"shows it in {out['st_click_s']:.2f} s")
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def markdown(rows: list[dict[str, Any]], command: str, versions: str, dataset: str | None = None) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok = lambda v, goal: "yes" if v <= goal else "**no**"  # noqa: E731
    lines = [
        f"## Embedding scatter in the browser{' on real codes' if dataset else ''} (bench/embedding_browser.py)", "",
        f"Run {when}. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"{versions}; load average at start {', '.join(f'{x:.2f}' for x in os.getloadavg())}.", "",
        "Command:", "", "```", command, "```", "",
        "The component (`dashboard/hover_scatter/index.html`, a canvas-2D renderer) in a static harness page that "
        "speaks the Streamlit component protocol, fed " + (
            f"the columns the Embedding page gets for the built-in dataset `{dataset}` (its real CNN codes' UMAP map, "
            "labels, predictions and confidences from the product's embedding technique; the thumbnails' sprite "
            "sheets are of real size but synthetic)" if dataset else "synthetic points (10 labelled clusters)"
        ) + " through the page's own columns file; headless Chromium, no GPU, viewport 1280×900. Zoomed out, with "
        "more than 50,000 points in view, it draws their density (each pixel the mean colour of its points, opacity "
        "by log count); zoomed in, "
        "each point. Goals (issue #28): first render ≤ 5 s at 1M, hover → image ≤ 150 ms, no frame over 200 ms "
        "while panning.", "",
        "| points | first render s | of it: fetch s | pan: frames, draw median ms, max frame gap ms (gaps over "
        "200 ms) | zoom: draw median ms, max frame gap ms (over 200 ms) | hover → image ms (median / max; first "
        "of a sheet) | zoomed in: points drawn, frame ms | lasso ms (selected) | goals met |",
        "| ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        hover = [(k[6:-10], r[k], r[k.replace("median", "max")], r[k.replace("median", "first")])
                 for k in r if k.startswith("hover_") and k.endswith("_median_ms")]
        hover_text = "; ".join(f"{tag}: {m:.0f} / {x:.0f}; {f:.0f}" for tag, m, x, f in hover)
        worst_hover = max(x for _, _, x, _ in hover)
        worst_gap = max(r["pan_gap_max_ms"], r["zoom_gap_max_ms"])
        met = (ok(r["first_render_s"], GOALS["first_render_s"]), ok(worst_hover, GOALS["hover_ms"]),
               ok(worst_gap, GOALS["frame_ms"]))
        lines.append(
            f"| {r['n']:,} | {r['first_render_s']:.2f} | {r['fetch_s']:.2f} | {r['pan_frames']}, "
            f"{r['pan_draw_median_ms']:.0f}, {r['pan_gap_max_ms']:.0f} ({r['pan_over']} of {r['pan_gaps']}) | "
            f"{r['zoom_draw_median_ms']:.0f}, {r['zoom_gap_max_ms']:.0f} ({r['zoom_over']} of {r['zoom_gaps']}) | "
            f"{hover_text} | {r['points_in_view']:,}, {r['points_frame_ms']:.0f} | "
            f"{r['lasso_ms']:.0f} ({r['lasso_selected']:,}) | render {met[0]}, hover {met[1]}, frames {met[2]} |")
    lines += ["", "The page's Python per answer (before the browser): decoding the API's base64 columns and writing "
              "the columns file the component fetches; the answer's size against the per-image JSON rows it replaces "
              "(estimated from one row):", "",
              "| points | decode s | write s | answer MB (columns, base64) | columns file MB | old answer MB (rows) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        p = r["page"]
        lines.append(f"| {r['n']:,} | {p['decode_s']:.3f} | {p['write_s']:.3f} | {p['answer_mb']:.1f} | "
                     f"{p['file_mb']:.1f} | {p['old_answer_mb']:.0f} |")
    if any("webgl_draw_ms" in r for r in rows):
        lines += ["", "The alternative measured on the same machine and points: Plotly's WebGL scatter (what the page "
                  "drew before; software-rendered here, SwiftShader), one trace per label, typed arrays given "
                  "directly:", "", "| points | first draw ms | a pan ms (median of 10, max) |",
                  "| ---: | ---: | ---: |"]
        lines += [f"| {r['n']:,} | {r['webgl_draw_ms']:.0f} | {r['webgl_pan_median_ms']:.0f} "
                  f"({r['webgl_pan_max_ms']:.0f}) |" for r in rows if "webgl_draw_ms" in r]
        lines += ["", CHOICE]
    if any("st_open_s" in r for r in rows):
        lines += ["", "Through a real Streamlit app (the same component and arguments; each visit a new browser "
                  "context, so Streamlit's own frontend is fetched and started too):", "",
                  "| points | opened → points drawn s (median of 3, max) | of it: Streamlit until the component's "
                  "frame opens s | fetching the columns s | preparing and drawing s | click → the rerun shows the "
                  "selection s |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['n']:,} | {r['st_open_s']:.2f} ({r['st_open_max_s']:.2f}) | {r['st_frame_s']:.2f} | "
                  f"{r['st_fetch_s']:.2f} | {r['st_draw_s']:.2f} | {r['st_click_s']:.2f} |"
                  for r in rows if "st_open_s" in r]
    lines += ["", "Hover times are measured from Python (a Playwright mouse move, then polling each animation frame "
              "until the thumbnail's image is decoded), so they include Playwright's round trips. Frame gaps are "
              "the intervals between `requestAnimationFrame` callbacks while Playwright drives the mouse.", ""]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (from its heading to the next ``## ``), or append it."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    head = section.splitlines()[0]
    if head in text:
        start = text.index(head)
        end = text.find("\n## ", start + len(head))
        text = text[:start] + section.rstrip("\n") + ("\n" + text[end:] if end >= 0 else "\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dataset", help="a dataset's real columns instead of synthetic points (--sizes ignored)")
    parser.add_argument("--webgl", action="store_true", help="also time Plotly's WebGL scatter on the same points")
    parser.add_argument("--streamlit", action="store_true", help="also open the component in a real Streamlit app")
    parser.add_argument("--out", type=Path, default=None, help="a markdown file to write this benchmark's section in")
    args = parser.parse_args(argv)
    sizes = [0] if args.dataset else [int(s) for s in args.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-embedding-"))
    os.environ["CONVLENS_DASHBOARD_CACHE"] = str(folder)
    from playwright.sync_api import sync_playwright

    from dashboard.hover_scatter import served_dir

    served = served_dir()
    rows = []
    server, base = serve(served)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            versions = f"Chromium {browser.version}"
            for n in sizes:
                columns, names = real(args.dataset) if args.dataset else (synthetic(n), None)
                n = len(columns["x"])
                side = page_side(columns)
                component_args = args_for(side.pop("data"), names)
                harness = HARNESS.replace("__ARGS__", json.dumps(component_args))
                (served / f"harness-{n}.html").write_text(harness)
                print(f"{n:,} points: page decode {side['decode_s']:.3f} s, write {side['write_s']:.3f} s, "
                      f"answer {side['answer_mb']:.1f} MB (rows were ~{side['old_answer_mb']:.0f} MB)", flush=True)
                row = measure(n, base, browser, columns, lambda m: print(m, flush=True))
                row["page"] = side
                if args.webgl:
                    row.update(webgl_reference(n, component_args["data"], served, base, browser,
                                               lambda m: print(m, flush=True)))
                if args.streamlit:
                    row.update(through_streamlit(n, component_args, served, browser, lambda m: print(m, flush=True)))
                rows.append(row)
            browser.close()
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    command = ".venv/bin/python bench/embedding_browser.py" + (
        f" --sizes {args.sizes}" if args.sizes != "100000,1000000" and not args.dataset else "") + (
        f" --dataset {args.dataset}" if args.dataset else "") + (
        " --webgl" if args.webgl else "") + (" --streamlit" if args.streamlit else "") + (
        f" --out {args.out}" if args.out else "")
    section = markdown(rows, command, versions, args.dataset)
    print(section)
    if args.out:
        write_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
