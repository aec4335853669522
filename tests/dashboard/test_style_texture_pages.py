"""Issue #27 on the Style and Texture pages: loss charts labelled at whole decades only, the Gram run's time
estimated before it starts and its "Gram loss −x %" said in words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.http import TechniqueInfo
from convlens import registry
from convlens.schema import SynthesisResponse
from dashboard import synthesis_view
from dashboard.app_pages import texture
from tests.dashboard.conftest import FakeClient, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"


def charts(at: object) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]  # type: ignore[attr-defined]


def decades_only(axis: dict) -> bool:  # type: ignore[type-arg]
    """A log axis whose labelled ticks are whole decades (plotly's default labels 2…9 of each decade too)."""
    return axis.get("type") == "log" and axis.get("dtick") == 1 and axis.get("exponentformat") == "power"


def test_the_grid_loss_chart_labels_whole_decades_spanning_the_losses() -> None:
    at = run_page(str(PAGES / "style.py"), FakeClient())
    at.button(key="grid_run").click().run()
    assert not at.exception and not at.error
    [grid] = [c for c in charts(at) if c["layout"]["title"]["text"] == "Style loss per cell"]
    axis = grid["layout"]["yaxis"]
    assert decades_only(axis)
    # the canned losses 1, 1/2, 1/3 lie within one decade: the range still spans a whole one, two labels
    assert axis["range"] == [-1, 0]


def test_a_loss_falling_by_orders_of_magnitude_gets_a_decade_log_axis_and_a_score_a_linear_one() -> None:
    falling = synthesis_view.history_figure({"gram_distance": [[1, 2, 3], [0.9, 0.01, 0.0006]]})
    assert decades_only(falling.layout.yaxis.to_plotly_json())
    assert list(falling.layout.yaxis.range) == [-4, 0]
    score = synthesis_view.history_figure({"score": [[1, 2, 3], [-2.0, 1.0, 5.0]]})
    assert score.layout.yaxis.type is None
    flat = synthesis_view.history_figure({"loss": [[1, 2], [0.5, 0.2]]})  # less than LOG_SPREAD apart
    assert flat.layout.yaxis.type is None


def test_texture_estimates_the_run_before_it_starts_and_explains_the_gram_loss() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "texture.py"), client)
    # the defaults: 50 steps of 128 × 128 at the reference rate 1e-5 s per step and pixel = 8.2 s
    [before] = [c.value for c in at.caption if c.value.startswith("Estimated time")]
    assert "about 8 s" in before and "50 steps of a 128×128 image" in before and "VGG-19" in before
    at.button(key="texture_run").click().run()
    assert not at.exception and not at.error
    said = " | ".join(c.value for c in at.caption)
    # the canned run: gram_reduction 0.98, so the Gram matrices are 1 / 0.02 = 50× closer than at the start
    assert "Gram loss −98.0%" in said and "50× closer to the source's" in said
    assert "which of the network's channels fire together" in said
    # the next estimate (the page's next run) uses that run's rate: 1.5 s for 50 steps of 128² → 1.5 s
    at.run()
    [after] = [c.value for c in at.caption if c.value.startswith("Estimated time")]
    assert "about 2 s" in after and "your last run" in after
    assert len(charts(at)) >= 1  # the Gram distance per step


@pytest.mark.parametrize("reduction, words", [(0.999, "1,000× closer"), (0.5, "2× closer")])
def test_the_gram_words_turn_the_reduction_into_a_factor(reduction: float, words: str) -> None:
    [spec] = [spec for spec in registry.registry().values()
              if spec.page == "texture" and any(d.name == texture.GRAM_REDUCTION for d in spec.outputs)]
    info = TechniqueInfo.from_json(spec.describe())
    response = SynthesisResponse(info.name, {}, {texture.GRAM_REDUCTION: reduction}, {}, {}, 1.0, "builtin",
                                 "builtin", None, None, None)
    assert words in (texture.gram_words(info, response) or "")
