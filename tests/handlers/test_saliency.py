"""/predictions/saliency through the handler: JSON, multipart and raw rows; batches grouped and answered in order."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from convlens.builtin.dataset import CLASSES
from tests.handlers.conftest import call, form_row, json_row, png_bytes


def _png(data: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    assert img.format == "PNG"
    return img


@pytest.mark.parametrize("method", ["vanilla", "guided", "gradcam"])
def test_json_request_returns_the_response_schema(saliency_handler, method: str) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(saliency_handler, [json_row(png_bytes(index=3), params={"method": method})])
    assert status == 200, body
    assert set(body) == {"images", "target", "target_label", "topk", "scalars", "elapsed_ms", "weights", "model",
                         "layer", "labels"}
    assert body["labels"] == {"colormap": "inferno"} and body["scalars"]["map_high"] > 0  # the colour scale
    expected = {"input", "map", "overlay"} | ({"gradient"} if method == "guided" else set())
    assert set(body["images"]) == expected
    assert _png(body["images"]["map"]).size == (64, 64) and _png(body["images"]["map"]).mode == "L"
    assert _png(body["images"]["overlay"]).mode == "RGB"
    assert body["weights"] == "builtin" and body["model"] == "builtin"
    assert body["target"] == body["topk"][0]["index"] and body["target_label"] == CLASSES[body["target"]]
    assert len(body["topk"]) == 5 and body["elapsed_ms"] > 0 and "score" in body["scalars"]
    assert (body["layer"] is not None) == (method == "gradcam")


def test_multipart_row_with_target_layer_and_display_params(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    row = form_row(png_bytes(index=1, fmt="JPEG"), model="builtin", target="6", layer="features.9",
                   params={"method": "gradcam", "alpha": 0.3, "colormap": "jet", "topk": 3})
    [(status, body)] = call(saliency_handler, [row])
    assert status == 200, body
    assert body["target"] == 6 and body["target_label"] == CLASSES[6]
    assert body["layer"] == "features.9" and len(body["topk"]) == 3


def test_multipart_method_field_and_raw_body(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    results = call(saliency_handler, [form_row(png_bytes(), method="guided"), {"body": bytearray(png_bytes())}])
    assert [s for s, _ in results] == [200, 200]
    assert "gradient" in results[0][1]["images"]  # guided
    assert results[1][1]["layer"] is not None  # the default method is Grad-CAM


def test_random_weights_only_when_asked(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(saliency_handler, [json_row(png_bytes(), weights="random", params={"method": "vanilla"})])
    assert status == 200 and body["weights"] == "random"


def test_a_batch_is_grouped_and_answered_in_order(saliency_handler, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import handlers.base as module

    calls: list[tuple[str, str, int]] = []
    real = module.pipeline.run

    def spy(loaded, technique, inputs, targets, layer, params):  # type: ignore[no-untyped-def]
        calls.append((loaded.weights, technique, len(inputs)))
        return real(loaded, technique, inputs, targets, layer, params)

    monkeypatch.setattr(module.pipeline, "run", spy)
    rows: list[Any] = [
        json_row(png_bytes(index=0), params={"method": "gradcam"}),
        form_row(png_bytes(index=1), params={"method": "vanilla"}),
        json_row(png_bytes(index=2), params={"method": "gradcam"}),
        json_row(png_bytes(index=3), params={"method": "gradcam"}, weights="random"),
        json_row(png_bytes(index=4), params={"method": "gradcam"}),
        json_row(png_bytes(index=5), params={"method": "gradcam"}, target=8),
        json_row(png_bytes(index=6), params={"method": "gradcam"}, target=2),
    ]
    results = call(saliency_handler, rows)
    assert [s for s, _ in results] == [200] * len(rows)
    # Groups: gradcam/builtin/no target (0, 2, 4), vanilla (1), random weights (3), gradcam with targets (5, 6).
    assert sorted(calls) == sorted([("builtin", "gradcam", 3), ("builtin", "vanilla", 1), ("random", "gradcam", 1),
                                    ("builtin", "gradcam", 2)])
    assert [b["weights"] for _, b in results] == ["builtin"] * 3 + ["random"] + ["builtin"] * 3
    assert results[5][1]["target"] == 8 and results[6][1]["target"] == 2
    assert results[1][1]["layer"] is None and results[0][1]["layer"] is not None


def test_batched_results_equal_single_results(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    rows = [json_row(png_bytes(index=i), params={"method": "vanilla"}) for i in range(3)]
    together = call(saliency_handler, rows)
    alone = [call(saliency_handler, [row])[0] for row in rows]
    for (_, a), (_, b) in zip(together, alone, strict=True):
        assert a["target"] == b["target"]
        assert a["topk"][0]["probability"] == pytest.approx(b["topk"][0]["probability"], abs=1e-5)
        assert a["scalars"]["score"] == pytest.approx(b["scalars"]["score"], rel=1e-4, abs=1e-5)
