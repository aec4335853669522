"""The real server: both endpoints over JSON and multipart, token auth, bad inputs, config lock-down, the CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from client.http import ApiError, ConvLensClient
from convlens.schema import AttributionResponse
from serve import server

CONVLENS = str(Path(sys.executable).with_name("convlens"))  # the console script users run
ROOT = Path(__file__).resolve().parents[2]


def post(info: server.ServerInfo, endpoint: str, token: str | None = "default", **kwargs: Any) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {info.token if token == 'default' else token}"}
    return requests.post(f"{info.inference_url}/predictions/{endpoint}", headers=headers, timeout=60, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bomb_png(side: int = 6000) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---------------------------------------------------------------- security


def test_generated_config_binds_loopback_and_disables_the_model_api(torchserve: server.ServerInfo) -> None:
    props = server.read_properties(torchserve.config_file)
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:"), props[key]
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["enable_model_api"] == "false" and props["disable_token_authorization"] == "false"
    assert int(props["max_request_size"]) >= 10 * 1024 * 1024 * 4 // 3 + 1024  # 10 MB image, base64 in JSON
    assert props["allowed_urls"].startswith("file://")


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_every_api_listens_on_loopback_only(torchserve: server.ServerInfo) -> None:
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    for port in (torchserve.ports.inference, torchserve.ports.management, torchserve.ports.metrics,
                 torchserve.ports.grpc_inference, torchserve.ports.grpc_management):
        addresses = _listening(port)
        assert addresses and set(addresses) <= loopback, (port, addresses)


def test_requests_without_the_token_are_refused(torchserve: server.ServerInfo, image_png: bytes) -> None:
    for token in (None, "wrong-token"):
        r = post(torchserve, "saliency", token=token, json={"image": b64(image_png)})
        assert r.status_code == 400 and "Token Authorization failed" in r.text
    r = requests.get(f"{torchserve.inference_url}/ping", timeout=10)
    assert r.status_code == 400
    r = requests.get(f"{torchserve.inference_url}/ping", headers={"Authorization": f"Bearer {torchserve.token}"},
                     timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "Healthy"


def test_models_cannot_be_registered_through_the_api(torchserve: server.ServerInfo) -> None:
    headers = {"Authorization": f"Bearer {torchserve.management_token}"}
    r = requests.post(f"{torchserve.management_url}/models", params={"url": "https://example.com/evil.mar"},
                      headers=headers, timeout=10)
    assert r.status_code == 405
    listed = requests.get(f"{torchserve.management_url}/models", headers=headers, timeout=10).json()
    from serve.archives import all_endpoints

    assert sorted(m["modelName"] for m in listed["models"]) == sorted(all_endpoints())


# ---------------------------------------------------------------- endpoints


@pytest.mark.parametrize("method", ["vanilla", "guided", "gradcam"])
def test_saliency_json(torchserve: server.ServerInfo, image_png: bytes, method: str) -> None:
    r = post(torchserve, "saliency", json={"image": b64(image_png), "model": "builtin", "target": None,
                                           "layer": None, "params": {"method": method}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    response = AttributionResponse.from_json(r.json())
    names = {"input", "map", "overlay"} | ({"gradient"} if method == "guided" else set())
    assert set(response.images) == names
    assert Image.open(io.BytesIO(base64.b64decode(response.images["overlay"]))).size == (64, 64)
    assert response.weights == "builtin" and response.elapsed_ms > 0 and len(response.topk) == 5


def test_saliency_multipart(torchserve: server.ServerInfo, image_file: Path) -> None:
    with image_file.open("rb") as f:
        r = post(torchserve, "saliency", files={"image": ("ring.png", f, "image/png")},
                 data={"model": "builtin", "target": "4", "layer": "features.9", "params": '{"method": "gradcam"}'})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target"] == 4 and body["target_label"] == "ring" and body["layer"] == "features.9"
    with image_file.open("rb") as f:  # `curl -F image=@ring.png -F method=guided`
        r = post(torchserve, "saliency", files={"image": f}, data={"method": "guided"})
    assert r.status_code == 200 and "gradient" in r.json()["images"]


def test_classify_json_and_multipart(torchserve: server.ServerInfo, image_png: bytes, image_file: Path) -> None:
    r = post(torchserve, "classify", json={"image": b64(image_png), "params": {"topk": 3}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["topk"]) == 3 and body["images"] == {} and body["target"] == body["topk"][0]["index"]
    with image_file.open("rb") as f:
        r = post(torchserve, "classify", files={"image": f}, data={"target": "2"})
    assert r.status_code == 200 and r.json()["target_label"] == "triangle"


def test_raw_image_body(torchserve: server.ServerInfo, image_png: bytes) -> None:
    """``curl --data-binary @ring.png -H "Content-Type: image/png"``: the body is the image."""
    r = requests.post(f"{torchserve.inference_url}/predictions/saliency", data=image_png, timeout=60,
                      headers={"Authorization": f"Bearer {torchserve.token}", "Content-Type": "image/png"})
    assert r.status_code == 200, r.text


def test_info_api_through_the_client(torchserve: server.ServerInfo) -> None:
    client = ConvLensClient(torchserve.inference_url, token=torchserve.token)
    assert client.ping().authorised
    models = {m.name: m for m in client.models()}
    assert models["builtin"].weights == "builtin" and models["vgg16"].weights == "missing"
    assert "convlens weights fetch vgg16" in (models["vgg16"].fetch_hint or "")
    layers = client.layers("builtin")
    assert layers.default_cam_layer in layers.cam_layers
    assert client.classes("builtin")[4] == "ring"


# ---------------------------------------------------------------- bad input

GOOD = "good"
BAD_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "not an image": ({"image": b64(b"definitely not an image")}, "image"),
    "truncated": ({"image": "TRUNCATED"}, "image"),
    "decompression bomb": ({"image": b64(bomb_png())}, "image"),
    "missing image": ({"model": "builtin"}, "image"),
    "unknown model": ({"image": GOOD, "model": "lenet"}, "model"),
    "unknown layer": ({"image": GOOD, "layer": "features.99"}, "layer"),
    "target out of range": ({"image": GOOD, "target": 10}, "target"),
    "target wrong type": ({"image": GOOD, "target": "ten"}, "target"),
    "params wrong type": ({"image": GOOD, "params": "gradcam"}, "params"),
    "unknown method": ({"image": GOOD, "params": {"method": "lime"}}, "params.method"),
    "weights not installed": ({"image": GOOD, "model": "alexnet"}, "model"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_a_4xx_json_naming_the_field(torchserve: server.ServerInfo, image_png: bytes, kind: str) -> None:
    body, field = BAD_INPUTS[kind]
    body = dict(body)
    if body.get("image") == GOOD:
        body["image"] = b64(image_png)
    elif body.get("image") == "TRUNCATED":
        body["image"] = b64(image_png[: len(image_png) // 2])
    r = post(torchserve, "saliency", json=body)
    assert 400 <= r.status_code < 500, r.text
    data = r.json()
    assert data["field"] == field and data["error"] and "Traceback" not in r.text
    if kind == "weights not installed":
        assert "convlens weights fetch alexnet" in data["error"]
    # The worker is still there and the next request succeeds.
    assert post(torchserve, "saliency", json={"image": b64(image_png)}).status_code == 200


def test_bad_multipart_upload(torchserve: server.ServerInfo) -> None:
    r = post(torchserve, "saliency", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and r.json()["field"] == "image"


def test_concurrent_mixed_requests_each_get_their_own_answer(torchserve: server.ServerInfo, image_png: bytes) -> None:
    bodies: list[dict[str, Any]] = []
    for i in range(8):
        body: dict[str, Any] = {"image": b64(image_png), "params": {"method": ("gradcam", "vanilla")[i % 2]},
                                "target": i}
        if i == 3:
            body["image"] = b64(b"garbage")
        if i == 5:
            body["target"] = 99
        bodies.append(body)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda b: post(torchserve, "saliency", json=b), bodies))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 400, 200, 400, 200, 200], [r.text[:200] for r in responses]
    for i, r in enumerate(responses):
        if r.status_code == 200:
            assert r.json()["target"] == i
    assert responses[3].json()["field"] == "image" and responses[5].json()["field"] == "target"


# ---------------------------------------------------------------- command line


def _cli_env(info: server.ServerInfo) -> dict[str, str]:
    return {**os.environ, "CONVLENS_URL": info.inference_url, "CONVLENS_KEY_FILE": str(info.key_file),
            "CONVLENS_RUN_DIR": str(info.run_dir)}


def test_convlens_call_prints_json_and_writes_pngs(torchserve: server.ServerInfo, image_file: Path,
                                                   tmp_path: Path) -> None:
    out = subprocess.run([CONVLENS, "call", "saliency", str(image_file), "--json", "--param",
                          "method=guided", "--param", "alpha=0.4", "--out", str(tmp_path)],
                         cwd=ROOT, env=_cli_env(torchserve), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["images"]) == {"input", "map", "overlay", "gradient"}
    for name, path in data["images"].items():
        assert Path(path) == tmp_path / f"{name}.png" and Image.open(path).format == "PNG"
    assert "iVBOR" not in out.stdout  # no base64 on the terminal
    bad = subprocess.run([CONVLENS, "call", "classify", str(image_file), "--target", "12"],
                         cwd=ROOT, env=_cli_env(torchserve), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "HTTP 400" in bad.stderr and "field: target" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_convlens_serve_status(torchserve: server.ServerInfo) -> None:
    out = subprocess.run([CONVLENS, "serve", "status", "--run-dir", str(torchserve.run_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "healthy" in out.stdout and str(torchserve.key_file) in out.stdout


def test_client_raises_api_error_with_field(torchserve: server.ServerInfo, image_png: bytes) -> None:
    client = ConvLensClient(torchserve.inference_url, token=torchserve.token)
    with pytest.raises(ApiError) as err:
        client.saliency(image_png, "gradcam", layer="nope")
    assert err.value.status == 400 and err.value.field == "layer"
    assert client.saliency(image_png, "vanilla", weights="random").weights == "random"


# ---------------------------------------------------------------- the other families' endpoints


def test_occlusion_has_the_saliency_shape(torchserve: server.ServerInfo, image_png: bytes) -> None:
    r = post(torchserve, "occlusion", json={"image": b64(image_png), "target": 4,
                                            "params": {"window": 8, "stride": 4, "fill": "mean"}})
    assert r.status_code == 200, r.text
    response = AttributionResponse.from_json(r.json())
    assert set(response.images) == {"input", "map", "overlay", "logit_drop"}
    assert response.target == 4 and response.target_label == "ring" and response.scalars["windows"] == 225


def test_activations_and_filters(torchserve: server.ServerInfo, image_png: bytes) -> None:
    client = ConvLensClient(torchserve.inference_url, token=torchserve.token)
    acts = client.grids("activations", image_png, layer="features.5", params={"channel": 2, "sort": "mean"})
    assert acts.layer == "features.5" and len(acts.items) == 64 and {"grid", "input", "overlay"} <= set(acts.images)
    means = [item["mean"] for item in acts.items]
    assert means == sorted(means, reverse=True) and acts.scalars["dead_channels"] >= 0
    filters = client.grids("filters", model="builtin")
    assert filters.layer == "features.0" and len(filters.items) == 32
    grid = Image.open(io.BytesIO(base64.b64decode(filters.images["grid"])))
    assert grid.mode == "RGB" and grid.size[0] > 16 * 7


@pytest.mark.parametrize(("endpoint", "body", "field"), [
    ("occlusion", {"params": {"window": 500}}, "params.window"),
    ("occlusion", {"params": {"stride": 0}}, "params.stride"),
    ("occlusion", {"params": {"fill": "sparkle"}}, "params.fill"),
    ("activations", {"layer": "classifier"}, "layer"),
    ("activations", {"layer": "code.2"}, "layer"),
    ("filters", {"layer": "features.2"}, "layer"),
    ("filters", {"image": "IMAGE"}, "image"),
    ("activations", {}, "image"),
])
def test_new_endpoints_name_the_bad_field(torchserve: server.ServerInfo, image_png: bytes, endpoint: str,
                                          body: dict[str, Any], field: str) -> None:
    payload = dict(body)
    if endpoint != "filters" and "image" not in payload and field != "image":
        payload["image"] = b64(image_png)
    if payload.get("image") == "IMAGE":
        payload["image"] = b64(image_png)
    r = post(torchserve, endpoint, json=payload)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["field"] == field and "Traceback" not in r.text


@pytest.mark.parametrize(("args", "files"), [
    (("occlusion", "IMAGE", "--param", "window=8", "--param", "stride=4", "--target", "ring"),
     {"map.png", "overlay.png", "input.png", "logit_drop.png"}),
    (("activations", "IMAGE", "--layer", "features.9"), {"grid.png", "input.png"}),
    (("filters", "--model", "builtin", "--layer", "features.0"), {"grid.png"}),
    (("gradcam", "IMAGE"), {"map.png", "overlay.png", "input.png"}),
])
def test_convlens_call_reaches_every_technique(torchserve: server.ServerInfo, image_file: Path, tmp_path: Path,
                                               args: tuple[str, ...], files: set[str]) -> None:
    argv = [str(image_file) if a == "IMAGE" else a for a in args]
    out = subprocess.run([CONVLENS, "call", *argv, "--json", "--out", str(tmp_path)], cwd=ROOT,
                         env=_cli_env(torchserve), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in tmp_path.iterdir()} == files
    data = json.loads(out.stdout)
    if args[0] == "occlusion":
        assert data["target_label"] == "ring"
