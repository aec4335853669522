"""Every page of the sidebar, as a newcomer first sees it: opened, its default run started (the page's primary
button, as it comes), and measured when the run has finished. A screenshot of each is saved
(``$CONVLENS_SCREENSHOTS``, default ``out/screenshots/``), and the test fails on what a glance would catch
(:mod:`tests.e2e.look`: cut labels, a button over an image, a toolbar over a legend, cut or crammed axis labels),
on a traceback, and on a page whose heading does not say what the sidebar calls it."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from tests.e2e import look
from tests.e2e.test_dashboard_browser import ROOT, dashboard

SHOTS = Path(os.environ.get("CONVLENS_SCREENSHOTS", ROOT / "out" / "screenshots"))
NO_DEFAULT_RUN = {"Datasets", "Models"}  # their primary buttons change what the server stores
RUN_TIMEOUT_S = 300.0  # the slowest default run (the first Faithfulness measurement) takes about two minutes
RUNNING = '[data-testid="stStatusWidget"]'  # Streamlit's "running" indicator, shown while a page's script runs


def settle(page: Any, seen: set[str]) -> float:
    """Wait until the page's script has finished (no running indicator for 3 s); meanwhile look at the page
    every 2 s (a Stop button exists only while a job runs). The seconds it took."""
    started = time.monotonic()
    quiet_since = None
    while time.monotonic() - started < RUN_TIMEOUT_S:
        seen.update(look.problems(page))
        if page.locator(RUNNING).count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 3:
            return time.monotonic() - started
        page.wait_for_timeout(1000)
    seen.add(f"still running after {RUN_TIMEOUT_S:.0f} s")
    return time.monotonic() - started


def default_run(page: Any, title: str, seen: set[str]) -> str:
    """Start the page's default run (its first enabled primary button) unless the page only changes the server's
    state; the button's label, or "" when the page runs by itself."""
    if title in NO_DEFAULT_RUN:
        return ""
    buttons = page.locator('[data-testid="stMain"] button[kind="primary"]:visible:enabled')
    if not buttons.count():
        return ""
    label = buttons.first.inner_text().strip()
    buttons.first.click()
    page.wait_for_timeout(1000)
    settle(page, seen)
    return label


def screenshot(page: Any, path: Path) -> None:
    """The whole page: the viewport grown to the main area's height (Streamlit scrolls inside it)."""
    size = page.viewport_size
    height = int(page.locator('[data-testid="stMain"]').evaluate("e => e.scrollHeight"))
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height + 40, 12_000))})
    page.wait_for_timeout(800)  # charts redraw at the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def heading_problem(page: Any, title: str) -> str | None:
    """The page's heading must say what the sidebar calls the page (either may be the longer)."""
    headings = page.locator('[data-testid="stMain"] h1, [data-testid="stMain"] h2')
    if not headings.count():
        return "no heading"
    heading = headings.first.inner_text().strip()
    a, b = heading.lower(), title.lower()
    return None if a in b or b in a else f"heading “{heading}” but the sidebar says “{title}”"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def test_every_page_after_its_default_run_shows_no_glance_problems(live: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    with dashboard(live, 1100) as page:
        links = page.locator('[data-testid="stSidebarNavLink"]')
        links.first.wait_for(timeout=60_000)
        titles = [links.nth(k).inner_text().strip().splitlines()[-1] for k in range(links.count())]
        assert len(titles) >= 15, titles
        for k, title in enumerate(titles):
            seen: set[str] = set()
            links.nth(k).click()
            page.wait_for_timeout(1500)
            settle(page, seen)
            default_run(page, title, seen)
            seen.update(look.problems(page))
            if page.locator('[data-testid="stException"]').count():
                seen.add("a traceback: " + page.locator('[data-testid="stException"]').first.inner_text()[:300])
            if (wrong := heading_problem(page, title)) is not None:
                seen.add(wrong)
            screenshot(page, SHOTS / f"{k:02d}-{slug(title)}.png")
            if seen:
                found[title] = sorted(seen)
    shots = sorted(p.name for p in SHOTS.glob("*.png"))
    assert len(shots) >= len(titles), shots
    assert found == {}, "\n".join(f"{t}: {p}" for t, ps in found.items() for p in ps)


def test_creating_a_dataset_shows_its_progress_then_its_outcome(live: str) -> None:
    """The Datasets page's Create, with its defaults (10,000 built-in images: about 20 s): a progress bar while the
    server's job runs, then a message naming the new dataset and its size."""
    with dashboard(live, 1100) as page:
        page.get_by_role("link", name="Datasets").click()
        name = page.get_by_label("Name", exact=True).input_value()
        page.get_by_role("button", name="Create").click()
        page.locator('[data-testid="stProgress"]').first.wait_for(timeout=30_000)
        outcome = page.locator('[data-testid="stAlert"]').filter(has_text=f"Created {name}")
        outcome.wait_for(timeout=RUN_TIMEOUT_S * 1000)
        assert "10,000 images" in outcome.inner_text() or "10000 images" in outcome.inner_text()
        assert look.problems(page) == []
