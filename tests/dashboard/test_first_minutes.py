"""Issue #27's readability items on the pages (streamlit.testing against the fake client): layers shallow to
deep, a colour scale beside every heat map, progress with an estimate on long waits, a visible outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client.http import ApiError, LayerCatalogue, LayerRow
from dashboard import widgets
from tests.dashboard.conftest import FakeClient, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"


def figures(at: Any) -> list[dict[str, Any]]:
    """Every plotly figure a page drew, as the dict Streamlit sends to the browser."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def catalogue(*names: str) -> LayerCatalogue:
    return LayerCatalogue("m", 64, names[-1], [LayerRow(n, "Conv2d", (8, 4, 4), 3, 1, True) for n in names], ())


def test_layers_are_ordered_by_depth_not_by_name() -> None:
    depth = catalogue("features.0", "features.2", "features.5", "features.9", "features.13", "features.16")
    given = ["features.13", "features.16", "features.2", "features.5", "features.9"]  # as sorted(): by name
    assert widgets.by_depth(given, depth) == ["features.2", "features.5", "features.9", "features.13", "features.16"]
    assert widgets.by_depth(["unknown", "features.5", "features.0"], depth) == ["features.0", "features.5", "unknown"]
    fig = widgets.layer_bars({n: float(k) for k, n in enumerate(given)}, depth, "PSNR (dB)").to_plotly_json()
    assert list(fig["data"][0]["x"]) == fig["layout"]["xaxis"]["categoryarray"] == \
        ["features.2", "features.5", "features.9", "features.13", "features.16"]
    assert fig["layout"]["xaxis"]["categoryorder"] == "array"


def test_the_inversion_ladders_psnr_bars_go_shallow_to_deep() -> None:
    client = FakeClient()  # its catalogue: features.0, .2, .14, .16; the canned ladder: features.2 and .16
    at = run_page(str(PAGES / "inversion.py"), client)
    at.button(key="inversion_ladder_run").click().run()
    assert not at.exception
    [bars] = [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "bar"]
    assert bars["data"][0]["x"] == ["features.2", "features.16"]  # by name, .16 would come first
    assert bars["layout"]["xaxis"]["categoryarray"] == ["features.2", "features.16"]


def test_the_embedding_legend_is_drawn_under_the_plot_clear_of_the_toolbar(tmp_path: Path, monkeypatch: Any) -> None:
    """The component's toolbar is its own row above the plot and the legend a row of its own under it: neither
    covers a point."""
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    at = run_page(str(PAGES / "embedding.py"), FakeClient())
    assert not at.exception
    [chart] = at.get("component_instance")
    assert json.loads(chart.proto.json_args)["colour"]["legend"]
    html = (PAGES.parent / "hover_scatter" / "index.html").read_text()
    body = html[html.index("<body>"):]
    assert body.index('id="bar"') < body.index('id="plot"') < body.index('id="legend"')


def test_creating_a_dataset_ends_with_its_name_and_size_or_an_error() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    at.text_input(key="ds_name").set_value("blobs").run()
    at.button(key="ds_create").click().run()
    assert not at.exception and not at.error
    [said] = [s.value for s in at.success]
    assert "blobs" in said and "6 images" in said and "2 classes" in said  # the fake's row of the new dataset
    at.run()
    assert not at.success  # said once
    client.fail = ApiError(507, "no space left on the server's disk")
    at.text_input(key="ds_name").set_value("more").run()
    at.button(key="ds_create").click().run()
    assert not at.success and "could not create more" in at.error[0].value and "no space left" in at.error[0].value


def test_removing_a_dataset_says_so() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    at.button(key="ds_remove").click().run()
    assert not at.exception and client.datasets_on_server == [] and "Removed **shapes**" in at.success[0].value


def progress_texts(monkeypatch: Any) -> list[str]:
    """Every text a page's progress bars show, in order (recorded as the page sets them)."""
    from streamlit.delta_generator import DeltaGenerator

    seen: list[str] = []
    original = DeltaGenerator.progress

    def recording(self: DeltaGenerator, value: Any, text: str | None = None) -> Any:
        seen.append(text or "")
        return original(self, value, text=text)

    monkeypatch.setattr(DeltaGenerator, "progress", recording)
    return seen


def test_faithfulness_says_how_long_is_left_and_that_it_is_only_the_first_time(monkeypatch: Any) -> None:
    seen = progress_texts(monkeypatch)
    at = run_page(str(PAGES / "faithfulness.py"), FakeClient())  # the fake reports each job half done, then done
    assert not at.exception and not at.error
    polled = [t for t in seen if "randomisation" in t and ("left" in t or "estimating" in t)]
    assert len(polled) >= 2 and all("first time only: cached afterwards" in t for t in polled)


def test_the_randomisation_chart_gives_its_layer_names_room(monkeypatch: Any) -> None:
    at = run_page(str(PAGES / "faithfulness.py"), FakeClient())
    [chart] = [f for f in figures(at) if f["layout"]["xaxis"].get("ticktext")]
    assert chart["layout"]["xaxis"]["ticktext"] == ["(none)", "classifier", "code.1"]
    assert chart["layout"]["xaxis"]["automargin"] is True and chart["layout"]["yaxis"]["automargin"] is True
    legend = chart["layout"]["legend"]  # under the slanted names and the axis title, not over them
    assert legend["yref"] == "container" and legend["y"] == 0 and legend["yanchor"] == "bottom"


def test_creating_a_dataset_estimates_the_time_left(monkeypatch: Any) -> None:
    seen = progress_texts(monkeypatch)
    at = run_page(str(PAGES / "datasets.py"), FakeClient())
    at.button(key="ds_create").click().run()  # 10,000 built-in images, reported half done then done
    assert not at.exception
    assert any(t.startswith("Creating shapes10k: 500 of 1,000 images — ") and ("left" in t or "estimating" in t)
               for t in seen)
    from dashboard.app_pages import datasets  # before the server reports: from the size asked for

    assert datasets.first_estimate({"action": "builtin", "n": 10_000}) == "about 20 s for 10,000 images"
    assert datasets.first_estimate({"action": "builtin", "n": 100}) == "a few seconds"


def test_time_left_follows_the_pace_so_far() -> None:
    assert widgets.time_left(30.0, 0.5) == "about 30 s left"
    assert widgets.time_left(60.0, 0.25) == "about 3 min left"
    assert widgets.time_left(2.0, 0.9) == "a few seconds left"
    assert widgets.time_left(0.0, 0.0) == "estimating the time left…"


def colour_bars(at: Any) -> list[dict[str, Any]]:
    return [f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap"]


def test_every_attribution_map_has_a_colour_bar_with_its_range() -> None:
    from convlens import registry
    from convlens.colormaps import plotly_scale

    at = run_page(str(PAGES / "attribution.py"), FakeClient())  # canned scale: inferno, 0 … 0.25, raw −0.01 … 0.25
    assert not at.exception
    every = colour_bars(at)
    bars = [b for b in every if b["data"][0]["zmin"] == 0]
    assert len(bars) == len(registry.of_family("attribution"))  # one per technique's map
    # occlusion's signed logit drop: blue … white … red over ± its largest |value| (the canned 2)
    [signed] = [b for b in every if b["data"][0]["zmin"] < 0]
    assert [list(c) for c in signed["data"][0]["colorscale"]] == [list(c) for c in plotly_scale("diverging")]
    assert signed["layout"]["xaxis"]["ticktext"] == ["-2", "0", "2"]
    for bar in bars:
        assert [list(c) for c in bar["data"][0]["colorscale"]] == [list(c) for c in plotly_scale("inferno")]
        assert bar["layout"]["xaxis"]["ticktext"] == ["0", "0.125", "0.25"]
    notes = [c.value for c in at.caption if c.value.startswith("raw map")]
    assert len(notes) == len(bars) and "-0.01 … 0.25" in notes[0] and "values below 0 as 0" in notes[0]


def test_the_activation_heat_map_has_a_colour_bar_with_its_range() -> None:
    """Scaled per channel: the chosen channel's own min … max; scaled as a layer: the layer's range."""
    at = run_page(str(PAGES / "activations.py"), FakeClient())  # the fake's channel 5 (tile 0): min 0, max 1
    assert not at.exception
    [bar] = colour_bars(at)
    assert bar["layout"]["xaxis"]["ticktext"] == ["0", "0.5", "1"] and "channel 5" in bar["layout"]["title"]["text"]
    at.selectbox(key="act_channel").set_value(3).run()  # tile 2: max 3
    [bar] = colour_bars(at)
    assert bar["layout"]["xaxis"]["ticktext"] == ["0", "1.5", "3"]
    at.radio(key="act_normalize").set_value("layer").run()  # the canned layer range: 0 … 4
    [bar] = colour_bars(at)
    assert bar["layout"]["xaxis"]["ticktext"] == ["0", "2", "4"] and "whole layer" in bar["layout"]["title"]["text"]


def test_ranking_patches_and_mapping_a_dataset_show_a_jobs_progress(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    seen = progress_texts(monkeypatch)
    for page, what in (("top_patches.py", "Ranking every channel of features.2"), ("embedding.py", "CNN codes")):
        at = run_page(str(PAGES / page), FakeClient())  # the fake's job: reported half done, then done
        assert not at.exception and not at.error
        assert any(t.startswith(f"{what}") and "500 of 1,000 images" in t and "cached afterwards" in t for t in seen)


def test_patches_are_drawn_at_a_whole_multiple_of_their_field() -> None:
    from dashboard.app_pages.top_patches import tile_px

    assert tile_px(25, 9) == 225  # 3 columns: 9 × the 25 px field, nearest-neighbour, ~720 px in all
    assert tile_px(25, 128) == 50  # an overview of 128 channels: 12 columns of 2 × 25 px
    assert tile_px(400, 9) == 256  # a field larger than the API's largest tile: the largest tile
