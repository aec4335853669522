"""/predictions/codes and /predictions/dataset through the corpus handler (no Java)."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from convlens.corpus import datasets as store
from tests.handlers.conftest import b64, call, json_row, make_context, png_bytes

pytestmark = pytest.mark.usefixtures("data_dir")  # a fresh datasets directory per test




@pytest.fixture(scope="module")
def codes_handler():  # type: ignore[no-untyped-def]
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context("codes"))
    return handler


@pytest.fixture(scope="module")
def dataset_handler():  # type: ignore[no-untyped-def]
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    return handler


@pytest.mark.parametrize("warm", [True, False])
def test_the_dataset_worker_checks_large_datasets_when_it_starts_if_its_config_says_so(
        warm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from handlers.corpus import CorpusHandler

    started: list[bool] = []
    monkeypatch.setattr(store, "warm_fingerprints", lambda: started.append(True))
    CorpusHandler().initialize(make_context("dataset", handler_config={"warm_umap": False, "warm_fingerprints": warm}))
    assert started == ([True] if warm else [])
    shipped = yaml.safe_load((Path(__file__).parents[2] / "serve" / "model-config" / "dataset.yaml").read_text())
    assert shipped["handler"]["warm_fingerprints"] is True  # the endpoint the Embedding page opens datasets on


def test_codes_endpoint_answers_a_batch_of_images_with_one_vector_each(codes_handler) -> None:  # type: ignore[no-untyped-def]
    images = [b64(png_bytes(index=i)) for i in range(5)]
    [(status, body)] = call(codes_handler, [{"body": {"images": images}}])
    assert status == 200, body
    assert len(body["vectors"]) == 5 and {len(v) for v in body["vectors"]} == {128} and body["layer"] == "code"
    assert body["scalars"] == {"images": 5.0, "dim": 128.0} and len(body["items"]) == 5
    [(_, alone)] = call(codes_handler, [{"body": {"images": images[3:4]}}])
    assert max(abs(a - b) for a, b in zip(alone["vectors"][0], body["vectors"][3], strict=True)) < 1e-4
    [(status, spatial)] = call(codes_handler, [{"body": {"images": images[:2], "layer": "features.8"}}])
    assert status == 200 and len(spatial["vectors"][0]) == 128 and spatial["layer"] == "features.8"


@pytest.mark.parametrize("body,field_name", [
    ({"images": "not-a-list"}, "images"),
    ({"images": []}, "images"),
    ({}, "images"),
    ({"images": ["%%%"]}, "images.0"),
    ({"images": [b64(b"not an image at all")]}, "images.0"),
    ({"images": [b64(png_bytes())] * 300}, "images"),
    ({"images": [b64(png_bytes())], "layer": "nope"}, "layer"),
    ({"images": [b64(png_bytes())], "params": {"pool": "median"}}, "params.pool"),
    ({"images": [b64(png_bytes())], "image": b64(png_bytes())}, "image"),
])
def test_codes_endpoint_names_the_bad_field(codes_handler, body, field_name: str) -> None:  # type: ignore[no-untyped-def]
    [(status, answer)] = call(codes_handler, [{"body": body}])
    assert status == 400 and answer["field"] == field_name, answer


def test_dataset_endpoint_creates_maps_searches_and_ranks(dataset_handler, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(dataset_handler, [json_row(params={"action": "builtin", "name": "set", "n": 20})])
    assert status == 200 and [d["name"] for d in body["items"]] == ["set"]
    [(status, body)] = call(dataset_handler, [json_row(params={"method": "embedding", "dataset": "set",
                                                               "projection": "pca"})])
    assert status == 200 and len(body["points"]) == 20 and body["items"][0]["file"].endswith(".png")
    query = store.open_dataset("set").path(4).read_bytes()
    [(status, body)] = call(dataset_handler, [json_row(query, params={"method": "neighbours", "dataset": "set",
                                                                      "k": 2})])
    assert status == 200 and [i["index"] for i in body["items"] if i["rank"] == 0] == [4, 4]
    [(status, body)] = call(dataset_handler, [json_row(params={"method": "top_patches", "dataset": "set",
                                                               "channel": 1, "k": 4})])
    # the default layer: the deepest whose receptive field (25 px) is at most half the 64 px input
    assert status == 200 and len(body["items"]) == 4 and body["layer"] == "features.10"
    assert body["scalars"]["receptive_field"] == 25 and body["scalars"]["input_size"] == 64
    assert base64.b64decode(body["images"]["grid"])[:4] == b"\x89PNG"
    [(status, body)] = call(dataset_handler, [json_row(params={"action": "sheet", "name": "set", "start": 4,
                                                               "count": 100, "size": 16})])
    from PIL import Image

    sheet = Image.open(io.BytesIO(base64.b64decode(body["images"]["sheet"])))
    assert status == 200 and sheet.size == (16 * 16, 16) and body["scalars"]["count"] == 16  # images 4..19


def zip_b64(entries: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def test_dataset_endpoint_imports_a_zip_and_refuses_an_escape(dataset_handler, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    good = zip_b64({"red/a.png": png_bytes(index=1), "blue/b.png": png_bytes(index=2), "readme.txt": b"hi"})
    [(status, body)] = call(dataset_handler, [json_row(params={"action": "import", "name": "up", "archive": good})])
    assert status == 200 and body["items"][0]["images"] == 2 and body["items"][0]["skipped"] == 1
    evil = zip_b64({"../../evil.png": png_bytes()})
    [(status, body)] = call(dataset_handler, [json_row(params={"action": "import", "name": "up2", "archive": evil})])
    assert status == 400 and body["field"] == "params.archive" and "escapes" in body["error"]
    assert {p.name for p in data_dir.iterdir() if not p.name.startswith(".")} == {"up"}
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".tmp")]
    assert not (data_dir.parent / "evil.png").exists()


@pytest.mark.parametrize("params,field_name", [
    ({"method": "embedding", "dataset": "../etc"}, "params.dataset"),
    ({"method": "embedding", "dataset": "missing"}, "params.dataset"),
    ({"method": "embedding", "dataset": "set", "projection": "mds"}, "params.projection"),
    ({"method": "neighbours", "dataset": "set"}, "params.query"),
    ({"method": "top_patches", "dataset": "set", "channel": 999}, "params.channel"),
    ({"method": "explode"}, "params.method"),
    ({"action": "remove", "name": "missing"}, "params.dataset"),
    ({"action": "sheet", "name": "set", "start": 4}, "params.start"),
    ({"action": "sheet", "name": "set", "count": 5000}, "params.count"),
])
def test_dataset_endpoint_names_the_bad_field(dataset_handler, params, field_name: str) -> None:  # type: ignore[no-untyped-def]
    store.builtin("set", 4)
    [(status, body)] = call(dataset_handler, [json_row(params=params)])
    assert status == 400 and body["field"] == field_name, body


def test_top_patches_need_a_spatial_layer(dataset_handler) -> None:  # type: ignore[no-untyped-def]
    store.builtin("set", 4)
    [(status, body)] = call(dataset_handler, [json_row(layer="code", params={"method": "top_patches",
                                                                             "dataset": "set"})])
    assert status == 400 and body["field"] == "layer" and "spatial" in body["error"]
