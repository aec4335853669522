"""A real TorchServe (Java) for the whole session, on free loopback ports in a temporary run directory."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from convlens.builtin.dataset import render_sample
from serve import server


@pytest.fixture(scope="session")
def server_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The running server's models directory ($CONVLENS_MODELS_DIR): models added here are served at once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory, server_models_dir: Path) -> Iterator[server.ServerInfo]:
    run_dir = tmp_path_factory.mktemp("torchserve")
    torch_home = tmp_path_factory.mktemp("torch-home")  # no ImageNet weights on this "server"
    data_dir = tmp_path_factory.mktemp("datasets")  # the server's datasets and caches, fresh
    try:
        info = server.start(run_dir, server.Ports.free(),
                            env={"TORCH_HOME": str(torch_home), "CONVLENS_WEIGHTS_DIR": "",
                                 "CONVLENS_DATA_DIR": str(data_dir), "CONVLENS_MODELS_DIR": str(server_models_dir)},
                            # a longer batching window, so concurrent requests really share batches
                            model_config={"saliency": {"maxBatchDelay": 100}}, timeout=240)
        assert info.healthy, info.detail
        yield info
    finally:
        server.stop(run_dir)


@pytest.fixture(scope="session")
def image_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(render_sample(31337, 4).image).save(buffer, format="PNG")  # a ring
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_file(tmp_path_factory: pytest.TempPathFactory, image_png: bytes) -> Path:
    path = tmp_path_factory.mktemp("images") / "ring.png"
    path.write_bytes(image_png)
    return path
