"""/predictions/classify and the info API through the handler."""

from __future__ import annotations

import hashlib

import pytest

from convlens import registry
from convlens.builtin.dataset import CLASSES
from convlens.models import REGISTRY, find_weights, load_model
from convlens.schema import AttributionResponse
from tests.handlers.conftest import call, form_row, json_row, png_bytes


def test_top_k(classify_handler) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(classify_handler, [json_row(png_bytes(index=4), params={"topk": 3})])
    assert status == 200, body
    response = AttributionResponse.from_json(body)  # exactly the schema
    assert response.images == {} and len(response.topk) == 3 and response.weights == "builtin"
    probs = [t.probability for t in response.topk]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert response.target == response.topk[0].index and response.target_label == CLASSES[response.target]
    assert response.scalars["probability"] == pytest.approx(probs[0])


def test_target_probability_and_form_fields(classify_handler) -> None:  # type: ignore[no-untyped-def]
    results = call(classify_handler, [form_row(png_bytes(), target="9"), json_row(png_bytes(), target=0)])
    assert [s for s, _ in results] == [200, 200]
    assert results[0][1]["target"] == 9 and results[0][1]["target_label"] == CLASSES[9]
    assert results[1][1]["target"] == 0 and 0 <= results[1][1]["scalars"]["probability"] <= 1


@pytest.mark.parametrize(("fields", "field"), [
    ({"layer": "features.3"}, "layer"),
    ({"params": {"method": "gradcam"}}, "params.method"),
    ({"params": {"topk": 0}}, "params.topk"),
])
def test_classify_rejects_what_it_does_not_use(classify_handler, fields, field) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(classify_handler, [json_row(png_bytes(), **fields)])
    assert status == 400 and body["field"] == field


def test_info_models(classify_handler) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(classify_handler, [{"body": {"info": "models"}}])
    assert status == 200
    rows = {m["name"]: m for m in body["models"]}
    assert tuple(rows)[:len(REGISTRY)] == tuple(REGISTRY)
    assert rows["builtin"]["weights"] == "builtin" and rows["builtin"]["num_classes"] == 10
    assert rows["builtin"]["input_size"] == 64 and rows["builtin"]["fetch_hint"] is None
    builtin, card = load_model("builtin"), rows["builtin"]["card"]
    assert card["parameters"] == sum(p.numel() for p in builtin.net.parameters())  # the meta build counts right
    assert card["layer_count"] == len(builtin.layers) and card["channels"] == 3
    assert card["weights_sha256"] == hashlib.sha256(find_weights("builtin").read_bytes()).hexdigest()
    assert rows["resnet50"]["card"]["parameters"] == 25_557_032 and rows["resnet50"]["card"]["weights_sha256"] is None
    assert rows["resnet50"] == {**rows["resnet50"], "weights": "missing", "num_classes": 1000, "input_size": 224}
    assert "convlens weights fetch resnet50" in rows["resnet50"]["fetch_hint"]
    attribution = [s.name for s in registry.of_family("attribution")]
    assert body["methods"] == attribution and {"vanilla", "guided", "gradcam", "occlusion"} <= set(attribution)


def test_info_techniques_come_from_the_registry(classify_handler) -> None:  # type: ignore[no-untyped-def]
    from convlens import registry

    [(status, body)] = call(classify_handler, [{"body": {"info": "techniques"}}])
    assert status == 200
    assert [t["name"] for t in body["techniques"]] == list(registry.registry())
    assert body["endpoints"] == list(registry.all_endpoints())
    filters = next(t for t in body["techniques"] if t["name"] == "filters")
    assert filters["inputs"] == [] and filters["layer"] == "conv" and filters["endpoint"] == "filters"
    occlusion = next(t for t in body["techniques"] if t["name"] == "occlusion")
    window = next(p for p in occlusion["params"] if p["name"] == "window")
    assert window["default"] == 8 and window["types"] == ["int"]


def test_info_layers_and_classes(classify_handler) -> None:  # type: ignore[no-untyped-def]
    results = call(classify_handler, [
        {"body": {"info": "layers", "model": "builtin"}},
        form_row(info="classes", model="resnet18"),
        {"body": {"info": "layers", "model": "squeezenet1_1"}},  # weights missing: the catalogue still works
        {"body": {"info": "nonsense"}},
        {"body": {"info": "layers", "model": "lenet"}},
    ])
    assert [s for s, _ in results] == [200, 200, 200, 400, 400]
    layers = results[0][1]
    names = [row["name"] for row in layers["layers"]]
    assert layers["default_cam_layer"] in names and layers["input_size"] == 64
    assert layers["classes"] == list(CLASSES)
    row = next(r for r in layers["layers"] if r["name"] == "features.0")
    assert row == {"name": "features.0", "type": "Conv2d", "output_shape": [32, 32, 32], "receptive_field": 7,
                   "stride": 2, "spatial": True, "conv": True}
    assert layers["first_conv_layer"] == "features.0"
    assert not next(r for r in layers["layers"] if r["name"] == "features.2")["conv"]
    assert len(results[1][1]["classes"]) == 1000
    assert results[2][1]["default_cam_layer"]
    assert results[3][1]["field"] == "info" and results[4][1]["field"] == "model"
