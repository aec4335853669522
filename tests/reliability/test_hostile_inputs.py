"""The malformed-input catalogue against the running server, through the gate: every case gets a 4xx JSON
``{"error": ..., "field": ...}`` naming the field, and a valid request right after it succeeds.

Each case is (endpoint, how the request is sent, expected status, expected field). "json" sends the
dict as ``application/json``; "form" sends multipart fields (bytes values become file parts); "raw" sends
bytes with the given Content-Type.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import Any

import pytest
import requests
from PIL import Image

from convlens.builtin.dataset import render_sample
from tests.reliability.conftest import Stack


def encoded(fmt: str = "PNG", index: int = 4, size: int | None = None) -> bytes:
    img = Image.fromarray(render_sample(11, index).image)
    if size is not None:
        img = img.resize((size, size))
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bomb(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height``."""
    data = bytearray(encoded("PNG", size=1))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


GOOD = encoded()
GOOD_B64 = b64(GOOD)
TRUNCATED = GOOD[: len(GOOD) // 2]
JPEG = encoded("JPEG")
BMP_HUGE = bytearray(encoded("BMP", size=4))
BMP_HUGE[18:26] = struct.pack("<ii", 100_000, 100_000)

Case = tuple[str, str, Any, tuple[int, ...], str | None]  # endpoint, kind, payload, statuses, field


def img(image: Any = GOOD_B64, **fields: Any) -> dict[str, Any]:
    return {"image": image, "model": "builtin", **fields}


BAD = (400,)
CASES: dict[str, Case] = {
    # ---- the image itself
    "not an image": ("saliency", "json", img(b64(b"this is not an image at all")), BAD, "image"),
    "truncated png": ("saliency", "json", img(b64(TRUNCATED)), BAD, "image"),
    "truncated jpeg": ("saliency", "json", img(b64(JPEG[: len(JPEG) // 2])), BAD, "image"),
    "bomb 6000x6000": ("saliency", "json", img(b64(bomb(6000, 6000))), BAD, "image"),
    "bomb 20000x20000": ("saliency", "json", img(b64(bomb(20_000, 20_000))), BAD, "image"),
    "bomb 65535x1": ("saliency", "json", img(b64(bomb(65_535, 1))), (200, 400), "image"),
    "bmp header 100000x100000": ("saliency", "json", img(b64(bytes(BMP_HUGE))), BAD, "image"),
    "tiff": ("saliency", "json", img(b64(encoded("TIFF"))), BAD, "image"),
    "ppm": ("saliency", "json", img(b64(encoded("PPM"))), BAD, "image"),
    "ico": ("saliency", "json", img(b64(encoded("ICO"))), BAD, "image"),
    "eps": ("saliency", "json", img(b64(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")), BAD,
            "image"),
    "pdf": ("saliency", "json", img(b64(b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF")), BAD, "image"),
    "svg": ("saliency", "json", img(b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>")), BAD, "image"),
    "webp header only": ("saliency", "json", img(b64(b"RIFF\x10\x00\x00\x00WEBPVP8 ")), BAD, "image"),
    "gif header only": ("saliency", "json", img(b64(b"GIF89a\x10\x00\x10\x00")), BAD, "image"),
    "png signature only": ("saliency", "json", img(b64(b"\x89PNG\r\n\x1a\n")), BAD, "image"),
    "empty string image": ("saliency", "json", img(""), BAD, "image"),
    "image not base64": ("saliency", "json", img("%%% not base64 %%%"), BAD, "image"),
    "image base64 bad padding": ("saliency", "json", img("abc"), BAD, "image"),
    "image int": ("saliency", "json", img(12), BAD, "image"),
    "image list": ("saliency", "json", img([1, 2, 3]), BAD, "image"),
    "image object": ("saliency", "json", img({"data": GOOD_B64}), BAD, "image"),
    "image null": ("saliency", "json", img(None), BAD, "image"),
    "image missing": ("saliency", "json", {"model": "builtin"}, BAD, "image"),
    "image 11 MB": ("saliency", "json", img(b64(b"\x89PNG" + b"\0" * (11 * 1024 * 1024))), BAD, "image"),
    # ---- target
    "target arabic-indic digit": ("saliency", "json", img(target="٣"), BAD, "target"),
    "target fullwidth digit": ("saliency", "json", img(target="３"), BAD, "target"),
    "target padded": ("saliency", "json", img(target=" 3 "), BAD, "target"),
    "target negative": ("saliency", "json", img(target=-1), BAD, "target"),
    "target out of range": ("saliency", "json", img(target=10), BAD, "target"),
    "target huge": ("saliency", "json", img(target=10**30), BAD, "target"),
    "target text": ("saliency", "json", img(target="abc"), BAD, "target"),
    "target hex": ("saliency", "json", img(target="0x3"), BAD, "target"),
    "target float": ("saliency", "json", img(target=3.5), BAD, "target"),
    "target float text": ("saliency", "json", img(target="3.0"), BAD, "target"),
    "target boolean": ("saliency", "json", img(target=True), BAD, "target"),
    "target list": ("saliency", "json", img(target=[3]), BAD, "target"),
    "target object": ("saliency", "json", img(target={"i": 3}), BAD, "target"),
    "target infinity": ("saliency", "raw-json", json.dumps(img(target=float("inf"))), BAD, "target"),
    "target class name unknown": ("saliency", "json", img(target="unicorn"), BAD, "target"),
    # ---- params / method
    "params list": ("saliency", "json", img(params=[1, 2]), BAD, "params"),
    "params int": ("saliency", "json", img(params=5), BAD, "params"),
    "params text not JSON": ("saliency", "json", img(params="{oops"), BAD, "params"),
    "params deeply nested": ("saliency", "raw-json",
                             '{"image": "' + GOOD_B64 + '", "params": {"a": ' + nested(50_000) + "}}", BAD, "body"),
    "method unknown": ("saliency", "json", img(params={"method": "lime"}), BAD, "params.method"),
    "method int": ("saliency", "json", img(params={"method": 5}), BAD, "params.method"),
    "method of another endpoint": ("saliency", "json", img(params={"method": "occlusion"}), BAD, "params.method"),
    "unknown parameter": ("saliency", "json", img(params={"method": "gradcam", "sigma": 2}), BAD, "params.sigma"),
    "guided channel without layer": ("saliency", "json", img(params={"method": "guided", "channel": 99}), BAD,
                                     "params.channel"),
    "guided channel negative": ("saliency", "json", img(layer="features.0", params={"method": "guided",
                                                                                    "channel": -1}), BAD,
                                "params.channel"),
    "guided channel out of range": ("saliency", "json", img(layer="features.0", params={"method": "guided",
                                                                                        "channel": 10_000}), BAD,
                                    "params.channel"),
    "guided reduce unknown": ("saliency", "json", img(params={"method": "guided", "reduce": "median"}), BAD,
                              "params.reduce"),
    "alpha out of range": ("saliency", "json", img(params={"alpha": 3}), BAD, "params.alpha"),
    "alpha text": ("saliency", "json", img(params={"alpha": "x"}), BAD, "params.alpha"),
    "alpha NaN": ("saliency", "raw-json", json.dumps(img(params={"alpha": float("nan")})), BAD, "params.alpha"),
    # ---- layer
    "gradcam on classifier": ("saliency", "json", img(layer="classifier", params={"method": "gradcam"}), BAD, "layer"),
    "gradcam on code.2": ("saliency", "json", img(layer="code.2", params={"method": "gradcam"}), BAD, "layer"),
    "layer unknown": ("saliency", "json", img(layer="features.99", params={"method": "gradcam"}), BAD, "layer"),
    "layer int": ("saliency", "json", img(layer=5, params={"method": "gradcam"}), BAD, "layer"),
    "layer path traversal": ("saliency", "json", img(layer="../../etc/passwd", params={"method": "gradcam"}), BAD,
                             "layer"),
    "layer dunder": ("saliency", "json", img(layer="__class__", params={"method": "gradcam"}), BAD, "layer"),
    "layer 10k chars": ("saliency", "json", img(layer="a" * 10_000, params={"method": "gradcam"}), BAD, "layer"),
    "layer for vanilla": ("saliency", "json", img(layer="features.3", params={"method": "vanilla"}), BAD, "layer"),
    # ---- model / weights
    "model unknown": ("saliency", "json", img(model="lenet"), BAD, "model"),
    "model int": ("saliency", "json", img(model=5), BAD, "model"),
    "model list": ("saliency", "json", img(model=["builtin"]), BAD, "model"),
    "model with NUL": ("saliency", "json", img(model="builtin\x00"), BAD, "model"),
    "model 10k chars": ("saliency", "json", img(model="m" * 10_000), BAD, "model"),
    "model path": ("saliency", "json", img(model="../builtin"), BAD, "model"),
    "model weights not installed": ("saliency", "json", img(model="alexnet"), BAD, "model"),
    "model resnet50 not installed": ("classify", "json", img(model="resnet50"), BAD, "model"),
    "weights unknown": ("saliency", "json", img(weights="imagenet21k"), BAD, "weights"),
    "weights int": ("saliency", "json", img(weights=1), BAD, "weights"),
    "random weights for vgg19": ("saliency", "json", img(model="vgg19", weights="random"), BAD, "weights"),
    "random weights for resnet101": ("classify", "json", img(model="resnet101", weights="random"), BAD, "weights"),
    # ---- the body
    "json array": ("saliency", "raw-json", "[1, 2, 3]", BAD, "body"),
    "json number": ("saliency", "raw-json", "42", BAD, "body"),
    "json string": ("saliency", "raw-json", '"abc"', BAD, "body"),
    "json null": ("saliency", "raw-json", "null", BAD, "body"),
    "json truncated": ("saliency", "raw-json", '{"image": ', BAD, "body"),
    "json trailing garbage": ("saliency", "raw-json", '{"model": "builtin"} trailing', BAD, "body"),
    "text sent as json": ("saliency", "raw-json", "hello there", BAD, "body"),
    "utf-16 json": ("saliency", "raw-json", ('{"image": "' + GOOD_B64 + '"}').encode("utf-16"), BAD, "body"),
    "latin-1 json": ("saliency", "raw-json", '{"model": "caf\xe9"}'.encode("latin-1"), BAD, "body"),
    "deeply nested body": ("saliency", "raw-json", nested(100_000), BAD, "body"),
    "deeply nested object": ("saliency", "raw-json", '{"a":' * 50_000 + "1" + "}" * 50_000, BAD, "body"),
    "url-encoded form": ("saliency", "urlencoded", {"image": GOOD_B64, "model": "builtin"}, BAD, "body"),
    "text/plain": ("saliency", "raw-text", "hello there", BAD, "body"),
    "raw garbage bytes": ("saliency", "raw", b"\x00\x01\x02garbage", BAD, "image"),
    "raw truncated png": ("saliency", "raw", TRUNCATED, BAD, "image"),
    "raw tiff": ("saliency", "raw", encoded("TIFF"), BAD, "image"),
    "empty body": ("saliency", "raw", b"", BAD, "image"),
    # ---- multipart
    "form text renamed png": ("saliency", "form", {"image": b"just some text, renamed to .png"}, BAD, "image"),
    "form empty image": ("saliency", "form", {"image": b""}, BAD, "image"),
    "form truncated png": ("saliency", "form", {"image": TRUNCATED}, BAD, "image"),
    "form bomb": ("saliency", "form", {"image": bomb(20_000, 20_000)}, BAD, "image"),
    "form params not JSON": ("saliency", "form", {"image": GOOD, "params": "{oops"}, BAD, "params"),
    "form target arabic-indic": ("saliency", "form", {"image": GOOD, "target": "٣"}, BAD, "target"),
    "form method unknown": ("saliency", "form", {"image": GOOD, "method": "lime"}, BAD, "params.method"),
    "form model unknown": ("saliency", "form", {"image": GOOD, "model": "lenet"}, BAD, "model"),
    "form no image": ("saliency", "form", {"model": "builtin"}, BAD, "image"),
    # parts sent twice: TorchServe's worker folds them into one dict (the last wins) unless refused
    "form two image parts": ("saliency", "form-parts", [("image", GOOD), ("image", JPEG)], BAD, "image"),
    "form two image parts, same bytes": ("classify", "form-parts", [("image", GOOD), ("image", GOOD)], BAD, "image"),
    "form two model fields": ("saliency", "form-parts", [("image", GOOD), ("model", "lenet"), ("model", "builtin")],
                              BAD, "model"),
    "form two params fields": ("occlusion", "form-parts", [("image", GOOD), ("params", "{}"), ("params", "{}")], BAD,
                               "params"),
    # ---- the info API
    "info unknown": ("classify", "json", {"info": "secrets"}, BAD, "info"),
    "info int": ("classify", "json", {"info": 3}, BAD, "info"),
    "info layers unknown model": ("classify", "json", {"info": "layers", "model": "lenet"}, BAD, "model"),
    "info classes model int": ("classify", "json", {"info": "classes", "model": 7}, BAD, "model"),
    # ---- the other endpoints
    "classify not an image": ("classify", "json", img(b64(b"nope")), BAD, "image"),
    "classify topk 0": ("classify", "json", img(params={"topk": 0}), BAD, "params.topk"),
    "classify topk 1000": ("classify", "json", img(params={"topk": 1000}), BAD, "params.topk"),
    "occlusion window 0": ("occlusion", "json", img(params={"window": 0}), BAD, "params.window"),
    "occlusion window huge": ("occlusion", "json", img(params={"window": 10**9}), BAD, "params.window"),
    "occlusion stride negative": ("occlusion", "json", img(params={"stride": -1}), BAD, "params.stride"),
    "occlusion fill unknown": ("occlusion", "json", img(params={"fill": "plaid"}), BAD, "params.fill"),
    "occlusion precision unknown": ("occlusion", "json", img(params={"precision": "int4"}), BAD, "params.precision"),
    "occlusion approximation 0": ("occlusion", "json", img(params={"approximation": 0}), BAD,
                                  "params.approximation"),
    "occlusion approximation text": ("occlusion", "json", img(params={"approximation": "fast"}), BAD,
                                     "params.approximation"),
    "occlusion dropped_energy 1": ("occlusion", "json", img(params={"dropped_energy": 1}), BAD,
                                   "params.dropped_energy"),
    "occlusion dropped_energy and τ": ("occlusion", "json", img(params={"dropped_energy": 0.01, "approximation": 0.8}),
                                       BAD, "params.dropped_energy"),
    "occlusion incremental text": ("occlusion", "json", img(params={"incremental": "yes"}), BAD,
                                   "params.incremental"),
    "occlusion memory budget huge": ("occlusion", "json", img(params={"memory_budget_mb": 10**9}), BAD,
                                     "params.memory_budget_mb"),
    "activations unknown layer": ("activations", "json", img(layer="features.99"), BAD, "layer"),
    "activations non-spatial layer": ("activations", "json", img(layer="classifier"), BAD, "layer"),
    "activations not an image": ("activations", "json", img(b64(b"nope"), layer="features.0"), BAD, "image"),
    "activations max_channels 0": ("activations", "json", img(layer="features.0", params={"max_channels": 0}), BAD,
                                   "params.max_channels"),
    "filters with an image": ("filters", "json", img(layer="features.0"), BAD, "image"),
    "filters unknown layer": ("filters", "json", {"model": "builtin", "layer": "features.99"}, BAD, "layer"),
    "filters non-conv layer": ("filters", "json", {"model": "builtin", "layer": "classifier"}, BAD, "layer"),
    "filters unknown model": ("filters", "json", {"model": "lenet", "layer": "features.0"}, BAD, "model"),
    "faithfulness unknown technique": ("faithfulness", "json", {"model": "builtin", "params": {"technique": "lime"}},
                                       BAD, "params.technique"),
    "faithfulness n huge": ("faithfulness", "json", {"model": "builtin", "params": {"n": 10**9}}, BAD, "params.n"),
}


def send(stack: Stack, endpoint: str, kind: str, payload: Any) -> requests.Response:
    if kind == "json":
        return stack.post(endpoint, json=payload)
    if kind == "raw-json":
        return stack.post(endpoint, data=payload.encode() if isinstance(payload, str) else payload,
                          headers={"Content-Type": "application/json"})
    if kind == "raw-text":
        return stack.post(endpoint, data=payload.encode(), headers={"Content-Type": "text/plain"})
    if kind == "raw":
        return stack.post(endpoint, data=payload, headers={"Content-Type": "application/octet-stream"}
                          if payload[:1] not in (b"{",) else {"Content-Type": "application/json"})
    if kind == "urlencoded":
        return stack.post(endpoint, data=payload)
    if kind == "form":
        files = {k: ("upload.png", v, "image/png") for k, v in payload.items() if isinstance(v, bytes)}
        data = {k: v for k, v in payload.items() if not isinstance(v, bytes)}
        return stack.post(endpoint, files=files or {"_": ("", b"", "text/plain")}, data=data)
    if kind == "form-parts":  # (name, value) pairs in order, names may repeat
        parts = [(k, ("upload.png", v, "image/png") if isinstance(v, bytes) else (None, v)) for k, v in payload]
        return stack.post(endpoint, files=parts)
    raise ValueError(kind)


def valid_request_succeeds(stack: Stack) -> None:
    r = stack.post("classify", json=img(params={"topk": 3}), timeout=60)
    assert r.status_code == 200, f"the valid request after the case failed: {r.status_code} {r.text[:300]}"
    assert r.json()["topk"][0]["label"] == "ring"


def test_the_catalogue_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gets_4xx_json_naming_the_field(stack: Stack, name: str) -> None:
    endpoint, kind, payload, statuses, field = CASES[name]
    r = send(stack, endpoint, kind, payload)
    assert r.status_code in statuses, f"{r.status_code} {r.text[:300]}"
    if r.status_code != 200:
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
        body = r.json()
        assert set(body) == {"error", "field"}, body
        assert body["field"] == field, body
        assert "Traceback" not in body["error"] and len(body["error"]) < 2000
    valid_request_succeeds(stack)


# ---- what the gate answers itself (TorchServe never sees these)


def test_oversize_body_gets_413_json_naming_the_limit(stack: Stack) -> None:
    r = stack.post("saliency", data=b"0" * (stack.gate.limits.max_body_bytes + 1),
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/json"
    assert r.json()["field"] == "body" and str(stack.gate.limits.max_body_bytes) in r.json()["error"]
    valid_request_succeeds(stack)


def test_413_directly_from_torchserve_is_empty_which_is_why_the_gate_exists(stack: Stack) -> None:
    r = requests.post(f"{stack.direct_url}/predictions/saliency", data=b"0" * (16 * 1024 * 1024 + 1),
                      headers=stack.headers(), timeout=60)
    assert r.status_code == 413 and r.content == b""


@pytest.mark.parametrize("what", ["header", "url"])
def test_oversize_header_or_url_gets_4xx_json(stack: Stack, what: str) -> None:
    if what == "header":
        r = stack.post("classify", json=img(), headers={"X-Filler": "x" * 40_000})
    else:
        r = requests.post(f"{stack.url}/predictions/classify?{'q=' + 'x' * 40_000}", json=img(),
                          headers=stack.headers(), timeout=30)
    assert r.status_code in (400, 414, 431, 494), r.status_code
    assert r.headers["Content-Type"] == "application/json" and "error" in r.json()
    valid_request_succeeds(stack)


@pytest.mark.parametrize("token", [None, "wrong-token", "Bearer"])
def test_missing_or_wrong_token_is_refused(stack: Stack, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": token if token == "Bearer" else f"Bearer {token}"}
    r = requests.post(f"{stack.url}/predictions/classify", json=img(), headers=headers, timeout=30)
    assert 400 <= r.status_code < 500 and "Token Authorization failed" in r.text
    r = requests.get(f"{stack.url}/ping", headers=headers, timeout=30)
    assert 400 <= r.status_code < 500
    valid_request_succeeds(stack)


def test_unknown_endpoint_and_wrong_method(stack: Stack) -> None:
    r = stack.post("nope", json=img())
    assert r.status_code == 404 and r.json()["code"] == 404
    r = requests.get(f"{stack.url}/predictions/classify", headers=stack.headers(), timeout=30)
    assert 400 <= r.status_code < 500
    r = requests.delete(f"{stack.url}/predictions/classify", headers=stack.headers(), timeout=30)
    assert 400 <= r.status_code < 500
    valid_request_succeeds(stack)
