"""Driving Streamlit widgets in Playwright the way a user does, robust to the reruns a loaded machine shows."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

OPTION_WAIT_MS = 5_000  # an open dropdown draws its options within milliseconds; 5 s means it was closed again


def pick(page: Any, label: str, option: str, *, exact: bool = True, timeout_s: float = 120.0) -> None:
    """Open the selectbox whose text contains ``label`` and click its option ``option``; return once the box
    shows it.

    The click goes to the box's combobox input: a click on its label opens nothing, and the box's centre lies
    only 5 px inside the input (a 68 px box: a 24 px label, a gap, a 38 px input). A dropdown that does not list
    the option (seen once in CI: it never appeared in 30 s) is closed with Escape and opened again until
    ``timeout_s``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    combo = box.get_by_role("combobox")
    choice = page.get_by_role("option", name=option, exact=exact).first
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_ms = max(1.0, deadline - time.monotonic()) * 1000
        box.wait_for(timeout=remaining_ms)
        (combo.first if combo.count() else box).click(timeout=remaining_ms)
        try:
            choice.click(timeout=OPTION_WAIT_MS)
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
            continue
        if shows(box, option, deadline):
            return


def shown(box: Any) -> str:
    """What a selectbox shows: its combobox input's value (Streamlit's react-aria select), else its text."""
    combo = box.get_by_role("combobox")
    if combo.count():
        return str(combo.first.input_value(timeout=OPTION_WAIT_MS))
    return str(box.inner_text(timeout=OPTION_WAIT_MS))


def shows(box: Any, option: str, deadline: float) -> bool:
    """Whether ``box`` comes to show ``option`` within a few seconds (a rerun may have dropped the click)."""
    end = min(deadline, time.monotonic() + OPTION_WAIT_MS / 1000)
    while True:
        try:
            if option in shown(box):
                return True
        except PlaywrightTimeout:
            pass
        if time.monotonic() > end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the selectbox never came to show {option!r}")
            return False
        time.sleep(0.1)
