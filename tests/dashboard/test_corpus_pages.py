"""The Datasets, Embedding, Neighbours and Top patches pages, driven with streamlit.testing against a fake client."""

from __future__ import annotations

import json
from pathlib import Path

from client.http import ApiError
from tests.dashboard.conftest import FakeClient, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "dashboard" / "app_pages"


def test_datasets_page_lists_creates_and_removes() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    assert not at.exception and not at.error and len(at.dataframe) == 1
    at.number_input(key="ds_n").set_value(2000).run()
    at.button(key="ds_create").click().run()
    created = [c for c in client.calls if c["params"].get("action") == "builtin"]
    assert created and created[0]["params"] == {"name": "shapes10k", "action": "builtin", "n": 2000}
    assert client.datasets_on_server == ["shapes", "shapes10k"]
    at.text_input(key="ds_name").set_value("Bad Name").run()
    assert at.button(key="ds_create").disabled and at.warning
    at.selectbox(key="ds_remove_name").set_value("shapes").run()
    at.button(key="ds_remove").click().run()
    assert client.datasets_on_server == ["shapes10k"] and not at.exception


def test_datasets_page_reports_a_refused_zip() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    client.fail = ApiError(400, "entry '../x.png' escapes the dataset folder", "params.archive")
    at.button(key="ds_create").click().run()
    assert not at.exception and "field `params.archive`" in at.error[0].value


def test_embedding_page_draws_a_webgl_scatter_per_label_and_offers_the_grid() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if c["method"] == "embedding"]
    assert call["params"] == {"dataset": "shapes", "projection": "umap", "seed": 0}
    [chart] = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert [t["type"] for t in spec["data"]] == ["scattergl", "scattergl"]
    assert sorted(t["name"] for t in spec["data"]) == ["circle", "square"]
    assert sum(len(t["x"]) for t in spec["data"]) == 6 and spec["data"][0]["customdata"][0][0] == 0
    at.radio(key="emb_colour").set_value("predicted").run()
    assert [t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]] == ["circle"]
    at.radio(key="emb_method").set_value("tsne").run()
    assert client.calls[-1]["params"]["projection"] == "tsne"
    at.slider(key="emb_grid").set_value(16).run()
    at.button(key="emb_grid_go").click().run()
    assert client.calls[-1]["params"]["grid"] == 16 and len(at.get("download_button")) == 1


def test_a_lasso_selection_becomes_dataset_indices() -> None:
    from dashboard.widgets import selected_indices

    event = {"selection": {"points": [{"customdata": [4, "square", "circle", "square/4.png"]},
                                      {"customdata": [1, "circle", "circle", "circle/1.png"]}]}}
    assert selected_indices(event) == [4, 1] and selected_indices(None) == [] and selected_indices({}) == []


def test_embedding_page_without_datasets_points_to_the_datasets_page() -> None:
    client = FakeClient(datasets_on_server=[])
    at = run_page(str(PAGES / "embedding.py"), client)
    assert not at.exception and "Datasets page" in at.info[0].value
    assert [c["method"] for c in client.calls] == ["datasets"]


def test_neighbours_page_shows_both_spaces_for_an_index_and_an_upload() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "neighbours.py"), client)
    assert not at.exception and not at.error
    at.number_input(key="nb_query").set_value(4).run()
    at.slider(key="nb_k").set_value(5).run()
    call = client.calls[-1]
    assert call["method"] == "neighbours" and call["params"] == {"dataset": "shapes", "k": 5, "query": 4}
    assert len(at.get("image")) == 3 and [m.value for m in at.metric] == ["100%", "0%"]
    at.radio(key="nb_source").set_value("Upload").run()
    assert not at.exception and "Upload an image" in at.info[0].value


def test_top_patches_page_browses_channels_and_layers() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "top_patches.py"), client)
    assert not at.exception and not at.error
    call = client.calls[-1]
    assert call["method"] == "top_patches" and call["layer"] == "features"  # the catalogue's default
    assert call["params"] == {"dataset": "shapes", "channel": 0, "k": 9}
    assert "pool" not in at.selectbox(key="tp_layer").options  # not spatial
    at.number_input(key="tp_channel").set_value(7).run()
    assert client.calls[-1]["params"]["channel"] == 7
    at.toggle(key="tp_overview").set_value(True).run()
    assert client.calls[-1]["params"]["channel"] is None
    at.selectbox(key="tp_layer").set_value("features.2").run()
    assert client.calls[-1]["layer"] == "features.2" and len(at.get("download_button")) == 1


def test_top_patches_page_reports_api_errors() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "top_patches.py"), client)
    client.fail = ApiError(400, "must be in [0, 127]", "params.channel")
    at.number_input(key="tp_channel").set_value(9).run()
    assert not at.exception and "field `params.channel`" in at.error[0].value
