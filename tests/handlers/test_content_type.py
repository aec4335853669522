"""The declared Content-Type decides how an undecodable body is reported: as the ``body``, never as a bad image."""

from __future__ import annotations

import json

import pytest

from convlens.schema import SchemaError
from handlers.base import request_fields


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
