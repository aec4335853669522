"""Edges of how a request is read and answered: declared Content-Type, url-encoded forms, bounded error messages."""

from __future__ import annotations

import json

import pytest

from convlens.schema import SchemaError
from handlers.parsing import request_fields


@pytest.mark.parametrize("raw", [b"hello there", '{"image": "x"}'.encode("utf-16"), b'{"image": ', b"\xff\xfe\x00"])
def test_body_declared_json_that_is_not_utf8_json_names_the_body(raw: bytes) -> None:
    with pytest.raises(SchemaError) as exc:
        request_fields({"body": bytearray(raw)}, "application/json")
    assert exc.value.field == "body" and "application/json" in exc.value.message


def test_url_encoded_forms_name_the_body() -> None:
    with pytest.raises(SchemaError) as exc:
        request_fields({"image": "abc", "model": "builtin"}, "application/x-www-form-urlencoded")
    assert exc.value.field == "body" and "url-encoded" in exc.value.message


def test_json_that_torchserve_left_undecoded_is_still_read() -> None:
    """A charset parameter can keep TorchServe from decoding: valid JSON is still accepted."""
    body = json.dumps({"info": "classes", "model": "builtin"}).encode()
    assert request_fields({"body": bytearray(body)}, "application/json") == {"info": "classes", "model": "builtin"}


def test_raw_image_bodies_are_unchanged() -> None:
    png = b"\x89PNG\r\n\x1a\n rest"
    assert request_fields({"body": bytearray(png)}, "image/png") == {"image": bytearray(png)}
    assert request_fields({"body": bytearray(png)}) == {"image": bytearray(png)}


def test_error_messages_do_not_echo_huge_values() -> None:
    from handlers.errors import MAX_ERROR_CHARS, RequestError

    body = RequestError(400, f"unknown layer {'a' * 10_000!r}", "layer").to_json()
    assert body["field"] == "layer" and len(body["error"]) <= MAX_ERROR_CHARS + 20
    assert body["error"].endswith("(truncated)")
    assert RequestError(400, "short", "layer").to_json() == {"error": "short", "field": "layer"}


def test_random_weights_only_for_the_allowed_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.base import ConvLensHandler
    from handlers.model_cache import random_weights_models
    from tests.handlers.conftest import json_row, make_context, png_bytes

    handler = ConvLensHandler()
    handler.initialize(make_context("saliency"))
    assert "vgg19" not in random_weights_models() and "builtin" in random_weights_models()
    with pytest.raises(SchemaError) as exc:
        handler.parse(0, json_row(png_bytes(), model="vgg19", weights="random")["body"])
    assert exc.value.field == "weights" and "CONVLENS_RANDOM_WEIGHTS_MODELS" in exc.value.message
    assert handler.cache.keys() == [], "nothing was built"
    monkeypatch.setenv("CONVLENS_RANDOM_WEIGHTS_MODELS", "builtin")
    with pytest.raises(SchemaError):
        handler.parse(0, json_row(png_bytes(), model="resnet18", weights="random")["body"])
    assert handler.parse(0, json_row(png_bytes(), model="builtin", weights="random")["body"]).weights == "random"
    monkeypatch.setenv("CONVLENS_RANDOM_WEIGHTS_MODELS", "all")
    assert handler.parse(0, json_row(png_bytes(), model="vgg19", weights="random")["body"]).weights == "random"


def _ts_batch(*names: str) -> list[dict]:
    """One request as TorchServe's worker protocol hands it over: a parameter per form part."""
    params = [{"name": n, "contentType": "text/plain", "value": f"{n}-{i}"} for i, n in enumerate(names)]
    return [{"requestId": b"r1", "headers": [], "parameters": params}]


def test_parts_sent_twice_are_remembered_and_refused_naming_the_field() -> None:
    from ts.service import Service

    from handlers import form_fields

    assert form_fields.install() and form_fields.install()  # idempotent: wrapped once
    wrapped = Service.__dict__["retrieve_data_for_inference"].__func__
    assert getattr(wrapped.wrapped, "wrapped", None) is None
    _, rows, _ = Service.retrieve_data_for_inference(_ts_batch("model", "image", "params", "image"))
    assert rows[0]["image"] == "image-3"  # what TorchServe alone keeps: the last part
    assert form_fields.duplicated_fields(rows[0]) == ("image",)
    with pytest.raises(SchemaError) as exc:
        request_fields(rows[0], "multipart/form-data")
    assert exc.value.field == "image" and "more than once" in exc.value.message
    _, rows, _ = Service.retrieve_data_for_inference(_ts_batch("image", "model"))
    assert form_fields.duplicated_fields(rows[0]) == () and request_fields(rows[0])["model"] == "model-1"
