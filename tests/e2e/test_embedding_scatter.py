"""The Embedding page's scatter component in Chromium at 150,000 synthetic points (no server, no Streamlit: the
component in the benchmark's static harness, which speaks the Streamlit component protocol): zoomed out it draws
the points' density, zoomed in single points; the hover shows the point's thumbnail; a click and a lasso select
points; the filter narrows what is drawn."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import embedding_browser as harness

N = 150_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    assert Path(harness.CHROMIUM).is_file(), f"{harness.CHROMIUM} missing: `make test` installs Debian's chromium"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path_factory.mktemp("cache")))
        from dashboard.hover_scatter import served_dir, write_columns

        folder = served_dir()
        args = harness.args_for(write_columns(harness.synthetic(N)))
        (folder / "harness.html").write_text(harness.HARNESS.replace("__ARGS__", json.dumps(args)))
        server, base = harness.serve(folder)
        try:
            yield base, folder, args
        finally:
            server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=harness.CHROMIUM, args=harness.CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(served: tuple[str, Path, dict[str, Any]], browser: Any) -> Iterator[Any]:
    tab = browser.new_page(viewport=harness.VIEWPORT)
    try:
        tab.goto(f"{served[0]}/harness.html")
        yield tab
    finally:
        tab.close()


def component(page: Any) -> Any:
    frame = None
    for _ in range(500):
        frame = next((f for f in page.frames if f.url.endswith("/index.html")), None)
        if frame is not None:
            break
        page.wait_for_timeout(20)
    assert frame is not None
    frame.wait_for_function("() => window.__convlensTimes && window.__convlensTimes.drawn > 0", timeout=60_000)
    return frame


def plot_state(frame: Any) -> dict[str, str]:
    return dict(frame.evaluate("() => Object.assign({}, document.getElementById('plot').dataset)"))


def drawn_pixels(frame: Any) -> int:
    """Pixels of the canvas that are not the white background."""
    return int(frame.evaluate("""() => { const c = document.getElementById('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let k = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i + 1] !== 255 || d[i + 2] !== 255) k++;
        return k; }"""))


def on_page(page: Any, frame: Any, x: float, y: float) -> tuple[float, float]:
    box = page.locator("iframe").bounding_box()
    left, top, _, _ = frame.evaluate("() => window.__convlens.canvasBox()")
    return box["x"] + left + x, box["y"] + top + y


def settle(frame: Any) -> None:
    frame.wait_for_function("() => document.getElementById('plot').dataset.complete === 'true'", timeout=10_000)


def test_zoomed_out_it_draws_the_density_and_zoomed_in_the_points(page: Any) -> None:
    frame = component(page)
    settle(frame)
    state = plot_state(frame)
    assert state["mode"] == "density" and int(state["visible"]) == N
    assert drawn_pixels(frame) > 20_000
    assert f"{N:,} of {N:,} points" in frame.locator("#status").text_content()
    legend = frame.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)")
    assert legend == [f"class{k}" for k in range(10)]
    for _ in range(30):  # zoom in on the middle until single points are drawn
        if plot_state(frame)["mode"] == "points":
            break
        frame.evaluate("() => { const [, , w, h] = window.__convlens.canvasBox(); "
                       "window.__convlens.zoomAt(1.6, w / 2, h / 2); }")
        settle(frame)
    state = plot_state(frame)
    assert state["mode"] == "points" and 0 < int(state["visible"]) <= 50_000
    # the hover shows the thumbnail of the point under the pointer: its tile of its sprite sheet
    x, y, index = frame.evaluate("() => window.__convlens.find(3, 0)")
    page.mouse.move(*on_page(page, frame, x, y))
    frame.wait_for_function("""i => { const tip = document.getElementById('tip'), im = document.getElementById('thumb');
        return tip.style.display === 'block' && tip.dataset.index === String(i) && im.complete
               && im.naturalWidth === 64 * 32; }""", arg=index, timeout=10_000)
    assert frame.locator("#thumb").get_attribute("src") == f"sheets/bench/{index // 1024}.png"
    assert frame.locator("#cap").text_content().startswith(f"#{index} · label class3 · predicted ")
    # a click selects that point; the value goes back to the page (Streamlit's setComponentValue)
    page.mouse.click(*on_page(page, frame, x, y))
    page.wait_for_function("() => window.__value && window.__value.selected.length === 1")
    assert page.evaluate("() => window.__value.selected") == [index]


def test_a_lasso_selects_the_points_inside_it(page: Any) -> None:
    frame = component(page)
    settle(frame)
    _, _, w, h = frame.evaluate("() => window.__convlens.canvasBox()")
    cx, cy = on_page(page, frame, w / 2, h / 2)
    page.mouse.move(cx - 60, cy)
    page.mouse.down()
    for a in np.linspace(np.pi, 3 * np.pi, 32):
        page.mouse.move(cx + 60 * np.cos(a), cy + 60 * np.sin(a))
    page.mouse.up()
    page.wait_for_function("() => window.__value && window.__value.selected.length > 0")
    chosen = page.evaluate("() => window.__value.selected")
    # every selected point is drawn inside the circle (a polygon of 32 sides: within its radius, give or take 2 px)
    where = np.array(frame.evaluate("ids => ids.map(i => window.__convlens.screenOf(i))", chosen))
    assert (np.hypot(where[:, 0] - w / 2, where[:, 1] - h / 2) <= 62).all() and len(chosen) > 100


def test_the_filter_and_the_colouring_change_what_is_drawn(page: Any, served: tuple[str, Path, dict[str, Any]]) -> None:
    frame = component(page)
    settle(frame)
    args = served[2]
    legend = [{"name": "incorrect", "colour": "#c5283d"}, {"name": "correct", "colour": "#a8c686"}]
    keep = dict(args, filter={"label": [2], "predicted": None, "confidence": [0.5, 1.0]},
                colour={"column": "correct", "colours": ["#c5283d", "#a8c686"], "legend": legend})
    frame.evaluate("a => window.postMessage({type: 'streamlit:render', args: a}, '*')", keep)
    frame.wait_for_function("() => document.getElementById('status').textContent.includes('(filtered)')")
    settle(frame)
    columns = harness.synthetic(N)
    expected = int(((columns["label"] == 2) & (columns["confidence"] >= 0.5)).sum())
    assert frame.locator("#status").text_content().startswith(f"{expected:,} of {N:,} points (filtered)")
    assert frame.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)") == ["incorrect", "correct"]
    assert os.path.getsize(served[1] / args["data"]["url"]) > N * 16  # x, y, confidence (f4); codes; correct
