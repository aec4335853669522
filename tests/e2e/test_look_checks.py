"""The page-look checks of :mod:`tests.e2e.look` find what they claim to, and nothing on a clean page:
static pages in headless Chromium, with plotly's own JavaScript (offline, from the plotly package)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import plotly.graph_objects as go
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests.e2e import look
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

LONG = "Run Gatys for comparison"
CLIPPED = "overflow:hidden;text-overflow:ellipsis;white-space:nowrap"  # how Streamlit clips a button label


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def found(browser: Any, html: str) -> list[str]:
    page = browser.new_page(viewport={"width": 900, "height": 700})
    try:
        page.set_content(html, wait_until="load")
        page.wait_for_timeout(300)  # plotly draws after load
        return look.problems(page)
    finally:
        page.close()


def button(width: int) -> str:
    return f'<button style="width:{width}px"><div style="{CLIPPED}"><p>{LONG}</p></div></button>'


def test_a_cut_button_label_is_found_and_a_whole_one_is_not(browser: Any) -> None:
    [cut] = found(browser, button(90))
    assert cut.startswith(f'label cut: "{LONG}" needs ') and cut.endswith(" px")
    assert found(browser, button(400)) == []


def png_data_url(side: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_button_over_an_image_is_found(browser: Any) -> None:
    image = f'<img src="{png_data_url(200)}" style="position:absolute;left:10px;top:10px">'
    over = '<button style="position:absolute;left:60px;top:60px">Stop</button>'
    beside = '<button style="position:absolute;left:260px;top:60px">Stop</button>'
    assert found(browser, image + over) == ['button "Stop" drawn over an image']
    assert found(browser, image + beside) == []


def chart(fig: go.Figure) -> str:
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displayModeBar": True})


def legend_figure(legend: dict[str, Any]) -> go.Figure:
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], name=n, mode="markers") for n in ("checkerboard", "ring")])
    return fig.update_layout(width=600, height=400, legend=legend, margin=dict(t=10, r=10))


def test_the_toolbar_over_a_legend_entry_is_found(browser: Any) -> None:
    under = found(browser, chart(legend_figure(dict(x=1, y=1, xanchor="right", yanchor="top"))))
    assert any(p.startswith('toolbar over legend entry "') for p in under), under
    assert found(browser, chart(legend_figure(dict(orientation="h", x=0, y=-0.15, yanchor="top")))) == []


def test_digit_only_log_axis_labels_are_found(browser: Any) -> None:
    """Plotly's minor labels on a log axis spanning less than a decade read "0.1, 2, 3, 5": out of order."""
    fig = go.Figure(go.Scatter(x=list(range(50)), y=[0.5 * 0.96 ** k for k in range(50)]))
    digits = fig.update_layout(width=500, height=300, yaxis=dict(type="log", dtick="D1"))
    problems = found(browser, chart(digits))
    assert any(p.startswith("axis labels out of order: ") for p in problems), problems
    decades = go.Figure(digits).update_yaxes(dtick=1, exponentformat="power")
    assert [p for p in found(browser, chart(decades)) if "axis labels" in p] == []


def test_plain_and_power_labels_in_order_are_not_reported(browser: Any) -> None:
    """A linear axis up to 100 (whose "100" is not 10⁰) and a log axis in powers of ten read in order."""
    linear = go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 55, 100])).update_layout(width=500, height=400)
    assert found(browser, chart(linear)) == []
    powers = go.Figure(go.Scatter(x=[0, 1, 2], y=[1e-3, 1, 1e3]))
    powers.update_layout(width=500, height=400, yaxis=dict(type="log", dtick=1, exponentformat="power"))
    assert found(browser, chart(powers)) == []


def test_x_labels_cut_by_the_chart_edge_are_found(browser: Any) -> None:
    names = [f"features.{k}.conv_block_output" for k in range(8)]
    fig = go.Figure(go.Scatter(x=names, y=list(range(8))))
    cut = fig.update_layout(width=600, height=300, margin=dict(b=5, l=5), xaxis=dict(tickangle=-45, automargin=False))
    assert any("cut off by the chart's edge (label " in p for p in found(browser, chart(cut)))
    whole = go.Figure(cut).update_xaxes(automargin=True)
    assert [p for p in found(browser, chart(whole)) if "cut off" in p] == []


def test_a_legend_over_the_axis_title_is_found(browser: Any) -> None:
    """A horizontal legend under a short chart lands on the x axis's title unless the chart leaves room."""
    fig = legend_figure(dict(orientation="h", x=0.3, y=-0.12, yanchor="top")).update_layout(
        xaxis_title="L∞ budget (/255)", margin=dict(b=40), height=300)
    over = found(browser, chart(fig))
    assert any(p.startswith('legend entry "') and 'over the text "L∞ budget (/255)"' in p for p in over), over
    inside = go.Figure(fig).update_layout(legend=dict(orientation="v", x=0.01, y=0.99, yanchor="top"))
    assert found(browser, chart(inside)) == []
