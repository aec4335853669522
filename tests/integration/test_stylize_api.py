"""Fast style transfer through the real server: concurrent requests share a batch, the style and blend
parameters are validated as 4xx naming the field, multipart works, and `convlens call stylize` writes the result."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from client.http import ApiError, ConvLensClient
from serve import server
from tests.integration.test_torchserve import CONVLENS, ROOT, _cli_env, post

PHOTO = ROOT / "dashboard" / "samples" / "ring.png"


def client(info: server.ServerInfo) -> ConvLensClient:
    return ConvLensClient(info.inference_url, token=info.token, timeout=120)


def test_concurrent_stylize_requests_are_batched(torchserve: server.ServerInfo) -> None:
    data = PHOTO.read_bytes()

    def one(_: int) -> float:
        r = client(torchserve).synthesis("stylize", {"content": data}, params={"style": "coffee", "size": 128})
        assert r.images["result"] and r.labels["styles"] == "coffee 1.00"
        return r.scalars["batch"]

    one(0)  # the worker loads the network first
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(one, range(16)))
    assert max(batches) > 1, batches


@pytest.mark.parametrize(("params", "field"), [
    ({"style": "picasso"}, "params.style"),
    ({"blend": {"hubble": 0.7, "coffee": 0.7}}, "params.blend"),
    ({"blend": {"hubble": 0.5, "monet": 0.5}}, "params.blend"),
    ({"size": 4096}, "params.size"),
    ({"strength": 2}, "params.strength"),
])
def test_bad_stylize_requests_are_4xx_naming_the_field(torchserve: server.ServerInfo, params: dict[str, object],
                                                        field: str) -> None:
    with pytest.raises(ApiError) as info:
        client(torchserve).synthesis("stylize", {"content": PHOTO.read_bytes()}, params=params)
    assert 400 <= info.value.status < 500 and info.value.field == field


def test_stylize_multipart(torchserve: server.ServerInfo) -> None:
    with PHOTO.open("rb") as f:
        r = post(torchserve, "stylize", files={"content": ("ring.png", f, "image/png")},
                 data={"params": json.dumps({"blend": {"hubble": 0.5, "brick": 0.5}, "size": 64})})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["technique"] == "stylize" and "result" in body["images"] and "brick 0.50" in body["labels"]["styles"]


@pytest.mark.parametrize("param", ["style=hubble", 'blend={"hubble": 0.5, "coffee": 0.5}'])
@pytest.mark.parametrize("mode", ["call", "run"])
def test_convlens_call_and_run_stylize(torchserve: server.ServerInfo, tmp_path: Path, mode: str, param: str) -> None:
    command = [CONVLENS, mode, "stylize", str(PHOTO), "--param", param, "--param", "size=96", "--json",
               "--out", str(tmp_path)]
    out = subprocess.run(command, cwd=ROOT, env=_cli_env(torchserve), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert {"result.png", "content.png"} <= {p.name for p in tmp_path.iterdir()}
    data = json.loads(out.stdout)
    assert data["scalars"]["seconds"] > 0 and "hubble" in data["labels"]["styles"]
