"""Every bad input gets its own 4xx JSON naming the field; the rest of the batch and the next batch are unharmed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.handlers.conftest import b64, bomb_png, call, form_row, json_row, png_bytes

GOOD = png_bytes(index=2)
TRUNCATED = GOOD[: len(GOOD) // 2]

BAD_REQUESTS: dict[str, tuple[Any, str, str]] = {
    # name: (row, field, a phrase the message contains)
    "not an image": (json_row(b"this is not an image at all"), "image", "not a recognised image"),
    "truncated": (json_row(TRUNCATED), "image", "truncated"),
    "decompression bomb": (json_row(bomb_png(6000, 6000)), "image", "pixels; the limit is 25000000"),
    "huge decompression bomb": (json_row(bomb_png(20_000, 20_000)), "image", "the limit is 25 Mpx"),
    "TIFF not allowed": (json_row(png_bytes(fmt="TIFF")), "image", "not a recognised image format"),
    "PPM not allowed": (json_row(png_bytes(fmt="PPM")), "image", "not a recognised image format"),
    "ICO not allowed": (json_row(png_bytes(fmt="ICO")), "image", "not a recognised image format"),
    "arabic-indic digit target": (json_row(GOOD, target="٣"), "target", "ASCII digits"),
    "padded target": (json_row(GOOD, target=" 3 "), "target", "ASCII digits"),
    "guided channel without a layer": (json_row(GOOD, params={"method": "guided", "channel": 99}), "params.channel",
                                       "needs a layer"),
    "gradcam on a non-spatial layer": (json_row(GOOD, layer="classifier"), "layer", "not spatial"),
    "gradcam on the code layer": (json_row(GOOD, layer="code.2"), "layer", "not spatial"),
    "missing image": (json_row(None, model="builtin"), "image", "is required"),
    "empty upload": (form_row(b"", model="builtin"), "image", "empty"),
    "image not base64": ({"body": {"image": "%%% not base64 %%%"}}, "image", "base64"),
    "image wrong type": ({"body": {"image": 12}}, "image", "got int"),
    "unknown model": (json_row(GOOD, model="lenet"), "model", "unknown model"),
    "model wrong type": (json_row(GOOD, model=5), "model", "expected a string"),
    "unknown layer": (json_row(GOOD, layer="features.99"), "layer", "features.99"),
    "layer for vanilla": (json_row(GOOD, layer="features.3", params={"method": "vanilla"}), "layer", "does not use"),
    "target out of range": (json_row(GOOD, target=10), "target", "[0, 9]"),
    "negative target": (json_row(GOOD, target=-1), "target", ">= 0"),
    "target wrong type": (json_row(GOOD, target="abc"), "target", "integer"),
    "unknown target label": (json_row(GOOD, target="stripes"), "target",
                             "did you mean horizontal_stripes, vertical_stripes, diagonal_stripes?"),
    "target boolean": (json_row(GOOD, target=True), "target", "boolean"),
    "params wrong type": (json_row(GOOD, params=[1, 2]), "params", "expected an object"),
    "params not JSON (form)": (form_row(GOOD, params="{oops"), "params", "not valid JSON"),
    "unknown method": (json_row(GOOD, params={"method": "lime"}), "params.method", "must be one of"),
    "unknown parameter": (json_row(GOOD, params={"method": "gradcam", "sigma": 2}), "params.sigma", "unknown"),
    "alpha out of range": (json_row(GOOD, params={"alpha": 3}), "params.alpha", "[0, 1]"),
    "bad weights choice": (json_row(GOOD, weights="imagenet21k"), "weights", "pretrained, random"),
    "body not an object": ({"body": [1, 2, 3]}, "body", "JSON object"),
    "body invalid JSON": ({"body": bytearray(b'{"image": ')}, "body", "not valid JSON"),
    "weights not installed": (json_row(GOOD, model="squeezenet1_1"), "model", "convlens weights fetch squeezenet1_1"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_a_4xx_naming_the_field(saliency_handler, name: str) -> None:  # type: ignore[no-untyped-def]
    row, field, phrase = BAD_REQUESTS[name]
    [(status, body)] = call(saliency_handler, [row])
    assert 400 <= status < 500
    assert set(body) == {"error", "field"} and body["field"] == field
    assert phrase in body["error"], body["error"]
    assert "Traceback" not in body["error"]


def test_one_bad_request_does_not_fail_its_batch(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    rows = [
        json_row(png_bytes(index=0), params={"method": "gradcam"}),
        json_row(png_bytes(index=1), params={"method": "gradcam"}, target=1),
        json_row(b"garbage", params={"method": "gradcam"}),  # the bad one, in the middle
        json_row(png_bytes(index=3), params={"method": "gradcam"}, target=42),  # bad target in a good group
        json_row(png_bytes(index=4), params={"method": "gradcam"}, target=4),
        form_row(png_bytes(index=5), params={"method": "vanilla"}),
    ]
    results = call(saliency_handler, rows)
    assert [s for s, _ in results] == [200, 200, 400, 400, 200, 200]
    assert results[2][1]["field"] == "image" and results[3][1]["field"] == "target"
    assert results[1][1]["target"] == 1 and results[4][1]["target"] == 4
    # ... and the worker carries on.
    assert call(saliency_handler, [json_row(GOOD)])[0][0] == 200


def test_a_class_label_is_the_same_target_as_its_index(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    rows = [json_row(GOOD, params={"method": "gradcam"}, target=3),
            json_row(GOOD, params={"method": "gradcam"}, target="Cross"),
            form_row(GOOD, params={"method": "gradcam"}, target="cross"),
            json_row(GOOD, params={"method": "gradcam"}, target="crosses"),  # no such class: only this one fails
            json_row(GOOD, params={"method": "gradcam"})]
    results = call(saliency_handler, rows)
    assert [s for s, _ in results] == [200, 200, 200, 400, 200]
    assert [results[i][1]["target_label"] for i in (0, 1, 2)] == ["cross"] * 3
    assert results[1][1]["images"]["map"] == results[0][1]["images"]["map"] == results[2][1]["images"]["map"]
    assert results[3][1]["field"] == "target" and "'crosses'" in results[3][1]["error"]


def test_a_bad_request_hidden_in_a_group_is_found(saliency_handler, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A group that fails in the core is retried request by request, so only the culprit fails."""
    import handlers.base as module

    real = module.pipeline.run

    def picky(loaded, technique, inputs, targets, layer, params):  # type: ignore[no-untyped-def]
        if 7 in targets:
            from convlens.schema import SchemaError
            raise SchemaError("target", "seven is unlucky")
        return real(loaded, technique, inputs, targets, layer, params)

    monkeypatch.setattr(module.pipeline, "run", picky)
    results = call(saliency_handler, [json_row(GOOD, target=t) for t in (1, 7, 3)])
    assert [s for s, _ in results] == [200, 400, 200]
    assert results[1][1] == {"error": "seven is unlucky", "field": "target"}


def test_unexpected_errors_are_500_json_without_details(saliency_handler, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import handlers.base as module

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret /internal/path exploded")

    monkeypatch.setattr(module.pipeline, "run", broken)
    with caplog.at_level(logging.ERROR, logger="handlers.base"):
        results = call(saliency_handler, [json_row(GOOD), json_row(b"not an image")])
    assert results[0][0] == 500 and results[0][1] == {"error": "internal error; see the server log", "field": None}
    assert results[1][0] == 400
    assert "secret /internal/path exploded" in caplog.text  # logged server-side, not sent
    monkeypatch.undo()
    assert call(saliency_handler, [json_row(GOOD)])[0][0] == 200


def test_missing_weights_name_the_model_and_how_to_fetch(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    [(status, body)] = call(saliency_handler, [json_row(GOOD, model="alexnet")])
    assert status == 400 and body["field"] == "model"
    assert "alexnet" in body["error"] and "convlens weights fetch alexnet" in body["error"]


def test_the_whole_batch_never_raises(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    results = call(saliency_handler, [None, 42, "text", {"body": b64(GOOD)}])
    assert all(400 <= s < 500 for s, _ in results)
    assert {b["field"] for _, b in results} == {"body"}
