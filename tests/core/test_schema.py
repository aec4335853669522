"""Request validation names the offending field; the schema module stays free of torch."""

from __future__ import annotations

import base64
import json

import pytest

from convlens.schema import (
    MAX_UPLOAD_BYTES,
    AttributionResponse,
    SchemaError,
    TopClass,
    parse_request,
    resolve_target,
)

PNG = b"\x89PNG\r\n\x1a\n fake but non-empty"


def test_json_request() -> None:
    req = parse_request(
        {"image": base64.b64encode(PNG).decode(), "model": "resnet18", "target": 3, "layer": "layer4",
         "params": {"method": "gradcam"}}
    )
    assert (req.image, req.model, req.target, req.layer, req.params) == (PNG, "resnet18", 3, "layer4",
                                                                         {"method": "gradcam"})


def test_multipart_fields_arrive_as_bytes() -> None:
    req = parse_request(
        {"image": bytearray(PNG), "model": b"builtin", "target": b"7", "params": b'{"method": "vanilla"}'}
    )
    assert (req.image, req.model, req.target, req.params) == (PNG, "builtin", 7, {"method": "vanilla"})


def test_defaults_and_data_urls() -> None:
    req = parse_request({"image": "data:image/png;base64," + base64.b64encode(PNG).decode()})
    assert (req.image, req.model, req.target, req.layer, req.params) == (PNG, "builtin", None, None, {})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "image"),
        ({"image": None}, "image"),
        ({"image": "@@not base64@@"}, "image"),
        ({"image": 12}, "image"),
        ({"image": ""}, "image"),
        ({"image": b"x", "model": "ResNet 9000"}, "model"),  # not a name (an unknown name: the loader's 4xx)
        ({"image": b"x", "model": "digits\n"}, "model"),
        ({"image": b"x", "model": 3}, "model"),
        ({"image": b"x", "target": " three"}, "target"),
        ({"image": b"x", "target": "٣"}, "target"),
        ({"image": b"x", "target": "x" * 101}, "target"),
        ({"image": b"x", "target": "tab\tby"}, "target"),
        ({"image": b"x", "target": True}, "target"),
        ({"image": b"x", "target": -1}, "target"),
        ({"image": b"x", "target": 1.5}, "target"),
        ({"image": b"x", "layer": ["features"]}, "layer"),
        ({"image": b"x", "params": "{not json"}, "params"),
        ({"image": b"x", "params": [1, 2]}, "params"),
    ],
)
def test_bad_fields_are_named(payload: dict, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_request(payload)
    assert info.value.field == field
    assert info.value.to_json()["field"] == field and info.value.to_json()["error"]


def test_upload_size_limit() -> None:
    with pytest.raises(SchemaError, match="limit") as info:
        parse_request({"image": b"x" * (MAX_UPLOAD_BYTES + 1)})
    assert info.value.field == "image"


def test_body_must_be_a_mapping() -> None:
    with pytest.raises(SchemaError) as info:
        parse_request([1, 2])  # type: ignore[arg-type]
    assert info.value.field == "body"


def test_response_round_trips_through_json() -> None:
    response = AttributionResponse(
        images={"map": "abc"}, target=1, target_label="square", topk=[TopClass(1, "square", 0.9)],
        scalars={"score": 2.0}, elapsed_ms=3.5, weights="builtin",
    )
    assert AttributionResponse.from_json(json.loads(json.dumps(response.to_json()))) == response


def test_a_target_may_be_a_class_label_resolved_against_the_model() -> None:
    req = parse_request({"image": b"x", "target": b"Great white shark"})
    assert (req.target, req.target_label) == (None, "Great white shark")
    assert parse_request({"image": b"x", "target": "7"}).target == 7
    classes = ("tench", "goldfish", "great white shark")
    assert resolve_target("GREAT WHITE SHARK", classes, "m") == 2
    with pytest.raises(SchemaError) as info:
        resolve_target("fish", classes, "m")
    assert info.value.field == "target" and "did you mean goldfish" in info.value.message
