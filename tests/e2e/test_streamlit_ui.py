"""The browser tests' selectbox helper against a page that closes its first dropdown, as a rerun does."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.streamlit_ui import pick

# A stand-in for Streamlit's select (a label over a combobox input whose value is the choice): the first open is
# swallowed (a script run re-rendered the box), later opens list the options; clicking one puts it in the input.
PAGE = """
<div data-testid="stSelectbox" style="width:300px"><label for="combo">Sample</label>
  <input id="combo" role="combobox" value="circle" readonly></div>
<div id="list" role="listbox" style="display:none"></div>
<script>
  const combo = document.getElementById('combo'), list = document.getElementById('list');
  window.opens = 0;
  combo.addEventListener('click', () => {
    window.opens += 1;
    if (window.opens === 1) return;
    list.innerHTML = '';
    for (const name of ['circle', 'ring', 'square']) {
      const o = document.createElement('div'); o.setAttribute('role', 'option'); o.textContent = name;
      o.onclick = () => { combo.value = name; list.style.display = 'none'; };
      list.appendChild(o);
    }
    list.style.display = 'block';
  });
  document.addEventListener('keydown', e => { if (e.key === 'Escape') list.style.display = 'none'; });
</script>
"""


@pytest.fixture()
def page():  # type: ignore[no-untyped-def]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_content(PAGE)
            yield page
        finally:
            browser.close()


def test_a_dropdown_closed_by_a_rerun_is_opened_again_and_the_option_picked(page) -> None:  # type: ignore[no-untyped-def]
    pick(page, "Sample", "ring", timeout_s=30)
    assert page.locator("#combo").input_value() == "ring"
    assert page.evaluate("window.opens") == 2  # the swallowed open, then the one that listed the options


def test_an_option_that_never_appears_fails_within_the_time_given(page) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="Timeout|never"):
        pick(page, "Sample", "hexagon", timeout_s=6)
    assert page.locator("#combo").input_value() == "circle"
