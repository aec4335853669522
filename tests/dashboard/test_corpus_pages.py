"""The Datasets, Embedding, Neighbours and Top patches pages, driven with streamlit.testing against a fake client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

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


def test_embedding_page_draws_the_hover_scatter_per_label_and_offers_the_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if c["method"] == "embedding"]
    assert call["params"] == {"dataset": "shapes", "projection": "umap", "seed": 0}
    [chart] = at.get("component_instance")
    assert chart.proto.component_name == "dashboard.hover_scatter.hover_scatter"
    args = json.loads(chart.proto.json_args)
    assert [t["name"] for t in args["traces"]] == ["circle", "square"]
    assert args["traces"][1]["index"] == [3, 4, 5] and args["traces"][1]["x"] == [3.0, 4.0, 5.0]
    assert args["files"][4] == "square/4.png" and args["labels"][4] == "square"
    # the hover's thumbnails: one sprite sheet of the 6 images, tile k at column k, written where it is served
    served = tmp_path / "hover_scatter"
    written = served / args["sheet"]["base"] / "0.png"
    for _ in range(100):  # written on a background thread
        if written.is_file():
            break
        time.sleep(0.05)
    [sheet_call] = [c for c in client.calls if c["params"].get("action") == "sheet"]
    assert sheet_call["params"] == {"action": "sheet", "name": "shapes", "start": 0, "count": 6, "size": 32}
    sheet = Image.open(written)
    assert sheet.size == (6 * 32, 32) and sheet.getpixel((5 * 32 + 16, 16)) == (200, 200, 200)
    assert (served / "index.html").is_file() and (served / "plotly.min.js").stat().st_size > 1_000_000
    at.radio(key="emb_colour").set_value("predicted").run()
    assert [t["name"] for t in json.loads(at.get("component_instance")[0].proto.json_args)["traces"]] == ["circle"]
    assert len([c for c in client.calls if c["params"].get("action") == "sheet"]) == 1  # sheets stay on disk
    at.radio(key="emb_method").set_value("tsne").run()
    assert client.calls[-1]["params"]["projection"] == "tsne"
    at.slider(key="emb_grid").set_value(16).run()
    at.button(key="emb_grid_go").click().run()
    assert client.calls[-1]["params"]["grid"] == 16 and len(at.get("download_button")) == 1


def test_a_click_or_lasso_in_the_scatter_shows_those_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    at.session_state["emb_chart"] = {"selected": [4, 1], "n": 1}  # what the component sends back
    at.run()
    assert not at.exception and at.subheader[0].value == "Selected: 2 images"
    assert client.calls[-1]["params"] == {"name": "shapes", "action": "images", "indices": "4,1"}
    assert len(at.get("image")) == 2


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
    # the deepest layer whose field (7 px) is at most half the 64 px input; "features" (61 px) is nearly all of it
    assert call["method"] == "top_patches" and call["layer"] == "features.2"
    assert any("receptive field 7 px of a 64 px input" in c.value for c in at.caption)
    assert call["params"] == {"dataset": "shapes", "channel": 0, "k": 9, "tile": 238}  # 3 columns of 34 × 7 px
    assert "pool" not in at.selectbox(key="tp_layer").options  # not spatial
    at.number_input(key="tp_channel").set_value(7).run()
    assert client.calls[-1]["params"]["channel"] == 7
    at.toggle(key="tp_overview").set_value(True).run()
    assert client.calls[-1]["params"]["channel"] is None
    at.selectbox(key="tp_layer").set_value("features").run()
    assert client.calls[-1]["layer"] == "features" and len(at.get("download_button")) == 1
    assert any("receptive field 61 px of a 64 px input" in c.value for c in at.caption)


def test_top_patches_page_reports_api_errors() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "top_patches.py"), client)
    client.fail = ApiError(400, "must be in [0, 127]", "params.channel")
    at.number_input(key="tp_channel").set_value(9).run()
    assert not at.exception and "field `params.channel`" in at.error[0].value
