"""The corpus endpoints on the real server: CNN codes as an embedding service, datasets made and mapped
through the API, the CLI reaching them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from client.http import ApiError, ConvLensClient
from serve import server
from tests.integration.test_torchserve import CONVLENS, ROOT, _cli_env


def test_codes_endpoint_is_an_embedding_service(torchserve: server.ServerInfo, image_png: bytes) -> None:
    client = ConvLensClient(torchserve.inference_url, token=torchserve.token)
    codes = client.codes([image_png, image_png, image_png])
    assert len(codes.vectors or []) == 3 and len(codes.vectors[0]) == 128 and codes.layer == "code"
    assert codes.items[0]["label"] == "ring"
    try:
        client.codes([b"not an image"])
        raise AssertionError("a bad image was accepted")
    except ApiError as exc:
        assert exc.status == 400 and exc.field == "images.0"


def test_a_dataset_made_through_the_api_is_mapped_searched_and_ranked(torchserve: server.ServerInfo,
                                                                      image_png: bytes, tmp_path: Path) -> None:
    client = ConvLensClient(torchserve.inference_url, token=torchserve.token)
    made = client.dataset("datasets", params={"action": "builtin", "name": "shapes", "n": 60})
    assert [d["name"] for d in made.items] == ["shapes"] and made.items[0]["images"] == 60
    umap = client.dataset("embedding", params={"dataset": "shapes"})
    assert len(umap.points or []) == 60 and umap.scalars["codes_cached"] == 0.0
    again = client.dataset("embedding", params={"dataset": "shapes"})
    assert again.points == umap.points and again.scalars["projection_cached"] == 1.0
    near = client.dataset("neighbours", params={"dataset": "shapes", "k": 4}, image=image_png)
    assert {"query", "code", "pixel"} <= set(near.images) and len(near.items) == 8
    top = client.dataset("top_patches", layer="features.9", params={"dataset": "shapes", "channel": 3})
    assert len(top.items) == 9 and top.scalars["receptive_field"] > 1
    out = subprocess.run([CONVLENS, "call", "top_patches", "--json", "--layer", "features.9",
                          "--param", "dataset=shapes",
                          "--param", "channel=1", "--out", str(tmp_path)], cwd=ROOT, env=_cli_env(torchserve),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"grid.png"} and json.loads(out.stdout)["layer"] == "features.9"


def test_convlens_call_sends_a_batch_to_codes_and_a_query_to_neighbours(torchserve: server.ServerInfo,
                                                                        image_file: Path, tmp_path: Path) -> None:
    env = _cli_env(torchserve)
    out = subprocess.run([CONVLENS, "call", "codes", str(image_file), str(image_file), "--json", "--out",
                          str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [len(v) for v in json.loads(out.stdout)["vectors"]] == [128, 128]
    ConvLensClient(torchserve.inference_url, token=torchserve.token).dataset(
        "datasets", params={"action": "builtin", "name": "query-set", "n": 12})
    out = subprocess.run([CONVLENS, "call", "neighbours", str(image_file), "--param", "dataset=query-set",
                          "--param", "k=2", "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"query.png", "code.png", "pixel.png"} <= {p.name for p in tmp_path.iterdir()}
