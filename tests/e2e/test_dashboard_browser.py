"""A real browser (headless Debian Chromium driven by Playwright) against the live API and dashboard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from convlens import registry
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.streamlit_ui import pick

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard-attribution.png"


@contextmanager
def dashboard(url: str, height: int) -> Iterator[Any]:
    """A headless Chromium page on the dashboard, once the sidebar says the API is connected."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("API: connected").wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()


def test_attribution_page_shows_real_maps_in_a_browser(live: str) -> None:
    with dashboard(live, 1100) as page:
        # Pick a sample the way a user does: open the picker and click an option.
        pick(page, "Sample", "ring")
        page.get_by_text("Why “ring”?").wait_for(timeout=240_000)  # the first answers of cold workers
        images = page.locator('[data-testid="stImage"] img:visible')  # the guided gradient hides in an expander
        images.nth(3).wait_for(timeout=60_000)
        images.nth(4).wait_for(timeout=60_000)
        loaded = rendered_images(page, 5)  # visible is not loaded: wait until five have decoded
        assert loaded >= 5, f"{loaded} images rendered"
        assert page.get_by_text("Guided backprop").count() >= 1
        assert page.get_by_text("Grad-CAM @").count() == 1
        assert page.get_by_text("Occlusion", exact=True).count() >= 1  # beside the other three
        captions = page.locator('[data-testid="stImageCaption"]')
        for spec in registry.of_family("attribution"):  # every registered method's map, SmoothGrad and IG included
            captions.filter(has_text=spec.title).first.wait_for(timeout=120_000)
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(500)  # let plotly finish drawing before the picture
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def rendered_images(page, at_least: int) -> int:  # type: ignore[no-untyped-def]
    """Wait (up to 60 s) until ``at_least`` visible images have loaded; the number that have."""
    script = """n => { const k = Array.from(document.querySelectorAll('[data-testid="stImage"] img'))
                 .filter(e => e.offsetParent !== null && e.complete && e.naturalWidth > 0).length;
                 return k >= n ? k : false; }"""
    # the count that satisfied the wait (a Streamlit rerun may swap an image a moment later)
    return int(page.wait_for_function(script, arg=at_least, timeout=60_000).json_value())


def test_activations_and_filters_pages_in_a_browser(live: str) -> None:
    with dashboard(live, 1400) as page:
        page.get_by_role("link", name="Activations").click()
        page.get_by_text("Dead for this image").wait_for(timeout=120_000)
        page.locator('[data-testid="stImage"] img:visible').nth(1).wait_for(timeout=60_000)
        assert rendered_images(page, 2) >= 2
        page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)  # the clickable grid
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ROOT / "docs" / "dashboard-activations.png"), full_page=True)

        page.get_by_role("link", name="Filters").click()
        page.get_by_text("filters, 7×7").wait_for(timeout=120_000)
        assert rendered_images(page, 1) >= 1
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.screenshot(path=str(ROOT / "docs" / "dashboard-filters.png"), full_page=True)


def set_number(page, label: str, value: int) -> None:  # type: ignore[no-untyped-def]
    field = page.get_by_label(label, exact=True).locator("visible=true").first
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_timeout(700)  # the rerun the new value triggers


def test_a_short_class_visualisation_shows_progress_then_the_result(live: str) -> None:
    with dashboard(live, 1100) as page:
        page.get_by_role("link", name="Classes and neurons").click()
        page.get_by_text("Regularisers and steps").click()
        set_number(page, "Steps", 150)
        page.get_by_role("button", name="Visualise class").click()
        page.get_by_text("Class visualisation: step").wait_for(timeout=120_000)  # the progress bar
        rendered_images(page, 1)  # the live preview
        page.get_by_text("the model says").wait_for(timeout=300_000)
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ROOT / "docs" / "dashboard-classviz.png"), full_page=True)


def test_a_short_style_transfer_shows_progress_then_the_result(live: str) -> None:
    with dashboard(live, 1300) as page:
        page.get_by_role("link", name="Style", exact=True).click()
        page.get_by_text("Weights, style scale, colour, steps").click()
        set_number(page, "Steps", 40)
        set_number(page, "Size", 96)
        page.get_by_role("button", name="Transfer style").click()
        page.get_by_text("Neural style transfer (Gatys): step").wait_for(timeout=120_000)
        page.get_by_text("· style loss").first.wait_for(timeout=300_000)  # the caption (the chart has a legend too)
        assert rendered_images(page, 3) >= 3  # content sample, content as used, result
        assert page.get_by_text("measured with:").count() >= 1  # the result names its network
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ROOT / "docs" / "dashboard-style.png"), full_page=True)


SCATTER_FRAME = 'iframe[src*="hover_scatter"]'


def point_on_page(page, trace: int, k: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Where a point of colour group ``trace`` (its k-th, or the next one a hover reaches: not hidden under another)
    of the Embedding scatter is drawn, in page pixels, and its dataset index."""
    box = page.locator(SCATTER_FRAME).bounding_box()
    frame = next(f for f in page.frames if "hover_scatter" in f.url)
    frame.wait_for_function("() => window.__convlensTimes && window.__convlensTimes.drawn > 0", timeout=60_000)
    x, y, index = frame.evaluate("([t, k]) => window.__convlens.find(t, k)", [trace, k])
    left, top, _, _ = frame.evaluate("() => window.__convlens.canvasBox()")
    return box["x"] + left + x, box["y"] + top + y, int(index)


THUMB_SHOWN = """() => { const tip = document.getElementById('tip'), im = document.getElementById('thumb');
                   return tip.style.display === 'block' && im.complete && im.naturalWidth > 0
                          && im.getAttribute('src') !== null ? String(tip.dataset.index) : false; }"""  # '0' is truthy


def hover_thumbnail(page, trace: int, k: int, timeout_s: float = 120.0) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Hover point ``k`` of ``trace`` until its thumbnail <img> is shown (the sprite sheets are written just
    after the chart, so the first hovers may come before them): (the hovered dataset index, seconds the
    last move took to show it)."""
    frame = next(f for f in page.frames if "hover_scatter" in f.url)
    x, y, _ = point_on_page(page, trace, k)
    deadline = time.monotonic() + timeout_s
    while True:
        page.mouse.move(x - 60, y - 60)
        started = time.perf_counter()
        page.mouse.move(x, y)
        try:
            shown = frame.wait_for_function(THUMB_SHOWN, timeout=2_000).json_value()
            return int(shown), time.perf_counter() - started
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def test_embedding_page_draws_the_scatter_and_shows_an_image_on_hover(live: str) -> None:
    with dashboard(live, 1200) as page:
        page.get_by_role("link", name="Embedding").click()
        page.get_by_text("300 images").wait_for(timeout=300_000)  # codes + UMAP (compiled at worker start)
        frame = page.frame_locator(SCATTER_FRAME)
        frame.locator("#plot canvas").first.wait_for(timeout=60_000)  # the canvas-2D scatter
        legend = frame.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)")  # SVG text
        assert {"circle", "ring", "dots"} <= set(legend), legend
        index, _ = hover_thumbnail(page, 0, 0)
        thumb = frame.locator("#thumb")
        assert thumb.evaluate("im => im.naturalWidth") == 64 * 32  # one sheet of 300 tiles, 64 to a row
        assert frame.locator("#cap").text_content().startswith(f"#{index} · label ")
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(300)
        page.screenshot(path=str(ROOT / "docs" / "dashboard-embedding.png"), full_page=True)
        # a click on a point still selects it: the page shows its image below the chart
        x, y, _ = point_on_page(page, 0, 0)
        page.mouse.click(x, y)
        page.get_by_text("Selected: 1 image").wait_for(timeout=60_000)
        assert rendered_images(page, 1) >= 1


def test_fast_style_stylises_a_sample_at_once(live: str) -> None:
    with dashboard(live, 1100) as page:
        page.get_by_role("link", name="Fast style", exact=True).click()
        page.get_by_text("ms forward").wait_for(timeout=120_000)  # no button: the result comes at once
        assert rendered_images(page, 2) >= 2  # content, fast result
        assert page.get_by_text("measured with:").count() >= 1
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ROOT / "docs" / "dashboard-fast-style.png"), full_page=True)


def test_models_page_lists_the_cards_and_a_registered_model_runs_the_attribution_page(live: str) -> None:
    """The shipped digits model (a registered model: 1 channel, 32 px) has a card on the Models page and, picked
    in the sidebar, drives the Attribution page like the built-in model does."""
    with dashboard(live, 1400) as page:  # tall enough that the sidebar's model picker is on screen below every page
        page.get_by_role("link", name="Models").click()
        page.get_by_text("Add a model").wait_for(timeout=60_000)
        assert page.get_by_text("digits", exact=True).count() >= 1
        assert page.get_by_text("9e45c187", exact=False).count() >= 1  # the digits weights' SHA-256 on its card
        page.screenshot(path=str(ROOT / "docs" / "dashboard-models.png"), full_page=True)
        pick(page, "Model", "digits", exact=False)
        page.get_by_role("link", name="Attribution").click()
        page.get_by_text("Why “").first.wait_for(timeout=120_000)
        page.locator('[data-testid="stImage"] img:visible').nth(3).wait_for(timeout=60_000)
        assert page.get_by_text("Grad-CAM @ features.6").count() == 1  # the manifest's Grad-CAM layer
        assert page.locator('[data-testid="stAlert"]').filter(has_text="could not").count() == 0
        page.screenshot(path=str(ROOT / "docs" / "dashboard-attribution-digits.png"), full_page=True)
