"""The Datasets, Embedding, Neighbours and Top patches pages, driven with streamlit.testing against a fake client."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

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


def component_args(at: AppTest) -> dict:  # type: ignore[type-arg]
    [chart] = at.get("component_instance")
    assert chart.proto.component_name == "dashboard.hover_scatter.hover_scatter"
    return json.loads(chart.proto.json_args)  # type: ignore[no-any-return]


def test_embedding_page_draws_the_hover_scatter_per_label_and_offers_the_grid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if c["method"] == "embedding"]
    assert call["params"] == {"dataset": "shapes", "projection": "umap", "seed": 0, "compact": True}
    args = component_args(at)
    assert args["colour"]["column"] == "label" and [e["name"] for e in args["colour"]["legend"]] == ["circle", "square"]
    assert args["names"]["label"] == {"0": "circle", "1": "square"} and args["names"]["predicted"] == {"0": "circle"}
    # the points' columns: one binary file beside the component, typed arrays at the offsets the args give
    served = tmp_path / "hover_scatter"
    blob = gzip.decompress((served / args["data"]["url"]).read_bytes())
    assert args["data"]["n"] == 6 and len(json.dumps(args)) < 4000
    offset, kind = args["data"]["columns"]["x"]
    assert kind == "float32" and np.frombuffer(blob, "<f4", 6, offset).tolist() == [0, 1, 2, 3, 4, 5]
    offset, kind = args["data"]["columns"]["label"]
    assert kind == "uint16" and np.frombuffer(blob, "<u2", 6, offset).tolist() == [0, 0, 0, 1, 1, 1]
    # the hover's thumbnails: one sprite sheet of the 6 images, tile k at column k, written where it is served
    written = served / args["sheet"]["base"] / "0.png"
    for _ in range(100):  # written on a background thread
        if written.is_file():
            break
        time.sleep(0.05)
    [sheet_call] = [c for c in client.calls if c["params"].get("action") == "sheet"]
    assert sheet_call["params"] == {"action": "sheet", "name": "shapes", "start": 0, "count": 6, "size": 32}
    sheet = Image.open(written)
    assert sheet.size == (6 * 32, 32) and sheet.getpixel((5 * 32 + 16, 16)) == (200, 200, 200)
    assert (served / "index.html").is_file()
    at.radio(key="emb_colour").set_value("predicted").run()
    assert [e["name"] for e in component_args(at)["colour"]["legend"]] == ["circle"]
    assert len([c for c in client.calls if c["params"].get("action") == "sheet"]) == 1  # sheets stay on disk
    at.radio(key="emb_method").set_value("tsne").run()
    assert client.calls[-1]["params"]["projection"] == "tsne"
    at.slider(key="emb_grid").set_value(16).run()
    at.button(key="emb_grid_go").click().run()
    assert client.calls[-1]["params"]["grid"] == 16 and len(at.get("download_button")) == 1


def test_the_embedding_colours_by_correctness_and_by_a_channel(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    at.radio(key="emb_colour").set_value("correct").run()
    colour = component_args(at)["colour"]
    assert colour["column"] == "correct" and [e["name"] for e in colour["legend"]] == ["incorrect", "correct"]
    at.radio(key="emb_colour").set_value("channel").run()
    at.number_input(key="emb_channel").set_value(2).run()
    assert not at.exception and not at.error
    assert client.calls[-1]["params"] == {"dataset": "shapes", "projection": "umap", "seed": 0, "compact": True,
                                          "channel": 2}
    args = component_args(at)
    assert args["colour"]["column"] == "activation" and args["colour"]["range"] == [0.0, 15.0]  # 3·arange(6)
    assert args["colour"]["title"] == "channel 2" and "activation" in args["data"]["columns"]


def test_the_embedding_filter_narrows_the_points_and_says_how_many(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    at = run_page(str(PAGES / "embedding.py"), FakeClient())
    assert component_args(at)["filter"] == {"label": None, "predicted": None, "confidence": [0.0, 1.0]}
    at.multiselect(key="emb_filter_label").set_value(["square"]).run()
    at.slider(key="emb_filter_confidence").set_value((0.45, 1.0)).run()
    assert not at.exception
    assert component_args(at)["filter"] == {"label": [1], "predicted": None, "confidence": [0.45, 1.0]}
    assert any("keeps 2 of 6 images" in c.value for c in at.caption)  # squares 3, 4 (0.6, 0.5); 5 is at 0.4


def test_a_click_or_lasso_in_the_scatter_shows_those_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    at.session_state["emb_chart"] = {"selected": [4, 1], "n": 1}  # what the component sends back
    at.run()
    assert not at.exception and at.subheader[0].value == "Selected: 2 images"
    assert client.calls[-1]["params"] == {"name": "shapes", "action": "images", "indices": "4,1"}
    assert len(at.get("image")) == 2
    # the selection's files as CSV: fetched only when asked for
    at.button(key="emb_csv_go").click().run()
    assert not at.exception and client.calls[-1]["params"]["files"] == "4,1"
    [csv_text] = [at.session_state["emb_csv"][1]]
    assert csv_text.splitlines() == ["index,file,label,predicted,confidence", "4,square/4.png,square,circle,0.5000",
                                     "1,circle/1.png,circle,circle,0.8000"]
    assert [d for d in at.get("download_button") if "selection" in str(d.proto)]


def test_a_map_fitted_on_a_sample_says_so_with_the_sample_size_and_why(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_DASHBOARD_CACHE", str(tmp_path))
    client = FakeClient()
    at = run_page(str(PAGES / "embedding.py"), client)
    assert not at.exception and not at.info  # fitted on all 6 images: nothing to explain
    client.embedding_fitted = 3.0
    at.radio(key="emb_method").set_value("tsne").run()
    assert not at.exception
    [note] = [i.value for i in at.info]
    assert "t-SNE was fitted on a seeded sample of **3 of the 6 images**" in note and "Barnes-Hut" in note
    assert any("fitted on 3, the rest placed on it" in c.value for c in at.caption)


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
