"""The Activations and Filters pages, driven with streamlit.testing against a fake client."""

from __future__ import annotations

from pathlib import Path

from client.http import ApiError
from convlens import registry
from tests.dashboard.conftest import FakeClient, run_page

ROOT = Path(__file__).resolve().parents[2]
ACTIVATIONS = str(ROOT / "dashboard" / "app_pages" / "activations.py")
FILTERS = str(ROOT / "dashboard" / "app_pages" / "filters.py")


def test_activations_page_shows_the_grid_the_dead_count_and_one_channel_large() -> None:
    client = FakeClient()
    at = run_page(ACTIVATIONS, client)
    assert not at.exception and not at.error
    [request] = client.calls
    assert request["endpoint"] == "activations" and request["layer"] == "features"  # the default layer
    assert request["params"] == {"sort": "channel", "normalize": "channel"} and request["image"]
    assert [m.value for m in at.metric] == ["6", "1", "8×8"]
    # the grid and the colour bar; the channel over the input, alone
    assert len(at.get("plotly_chart")) == 2 and len(at.get("image")) == 2
    assert at.selectbox(key="act_channel").value == 5  # the strongest channel (largest mean) is shown first


def test_activations_sorting_and_layer_reach_the_api_and_channels_are_picked_locally() -> None:
    client = FakeClient()
    at = run_page(ACTIVATIONS, client)
    at.radio(key="act_sort").set_value("mean").run()
    at.selectbox(key="act_layer").set_value("features.2").run()
    assert client.calls[-1]["params"]["sort"] == "mean" and client.calls[-1]["layer"] == "features.2"
    calls = len(client.calls)
    at.selectbox(key="act_channel").set_value(2).run()
    at.slider(key="act_alpha").set_value(1.0).run()
    assert not at.exception and len(client.calls) == calls  # cut from the mosaic, blended here
    assert "pool" not in at.selectbox(key="act_layer").options


def test_activations_page_reports_api_errors() -> None:
    at = run_page(ACTIVATIONS, FakeClient(fail=ApiError(400, "'pool' is not spatial", "layer")))
    assert not at.exception and len(at.error) == 1 and "field `layer`" in at.error[0].value


def test_filters_page_compares_models_side_by_side() -> None:
    client = FakeClient()
    at = run_page(FILTERS, client)
    assert not at.exception and not at.error
    assert at.multiselect(key="filters_models").options == ["builtin", "alexnet"]  # vgg16 has no weights here
    assert [c["model"] for c in client.calls] == ["builtin"] and client.calls[0]["layer"] == "features.0"
    assert client.calls[0]["image"] is None
    at.multiselect(key="filters_models").set_value(["builtin", "alexnet"]).run()
    assert not at.exception
    assert [c["model"] for c in client.calls[-2:]] == ["builtin", "alexnet"]
    assert all(c["layer"] is None for c in client.calls[-2:])  # each model's own first convolution
    assert len(at.get("image")) == 2 and len(at.get("download_button")) == 2
    assert any("vgg16" in c.value for c in at.caption)


def test_filters_page_deeper_layer_and_count() -> None:
    client = FakeClient()
    at = run_page(FILTERS, client)
    at.selectbox(key="filters_layer").set_value("features.14").run()
    at.slider(key="filters_max").set_value(128).run()
    assert client.calls[-1]["layer"] == "features.14" and client.calls[-1]["params"] == {"max_filters": 128}
    assert at.selectbox(key="filters_layer").options == ["features.0", "features.14"]


FAITHFULNESS = str(ROOT / "dashboard" / "app_pages" / "faithfulness.py")


def test_faithfulness_page_charts_each_chosen_technique() -> None:
    client = FakeClient()
    at = run_page(FAITHFULNESS, client)
    assert not at.exception and not at.error
    assert [c["params"]["technique"] for c in client.calls] == [s.name for s in registry.of_family("attribution")]
    assert all(c["method"] == "faithfulness" and c["params"]["n"] == 30 for c in client.calls)
    assert len(at.get("plotly_chart")) == 4  # scores, deletion, insertion, randomisation
    at.slider(key="faith_n").set_value(60).run()
    at.multiselect(key="faith_techniques").set_value(["occlusion"]).run()
    assert client.calls[-1]["params"] == {"technique": "occlusion", "n": 60}


def test_faithfulness_page_needs_the_builtin_model() -> None:
    client = FakeClient()
    at = run_page(FAITHFULNESS, client, model="alexnet")
    assert not at.exception and client.calls == [] and "builtin" in at.info[0].value
