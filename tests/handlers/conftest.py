"""Handlers without Java: a hand-built ``ts.context.Context`` and TorchServe-shaped request rows."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from ts.context import Context, RequestProcessor

from convlens.builtin.dataset import render_sample


def make_context(name: str = "saliency", gpu_id: int | None = None, batch_size: int = 8,
                 handler_config: dict[str, Any] | None = None) -> Context:
    """What TorchServe's worker builds for a model (see ts/service.py)."""
    yaml_config = {"batchSize": batch_size, "handler": {"preload": [], **(handler_config or {})}}
    return Context(name, "/nonexistent/model_dir", {"model": {"modelName": name}}, batch_size, gpu_id, "0.12.0",
                   model_yaml_config=yaml_config)


def call(handler: Any, rows: Sequence[Any]) -> list[tuple[int, dict[str, Any]]]:
    """Run one batch the way TorchServe does and return (status, JSON body) per request."""
    context = handler.context
    context.request_ids = {i: f"req-{i}" for i in range(len(rows))}
    context.request_processor = [RequestProcessor({}) for _ in rows]
    out = handler.handle(list(rows), context)
    assert isinstance(out, list) and len(out) == len(rows), "one response per request"
    results = []
    for i, body in enumerate(out):
        status, _phrase = context.get_response_status(i)
        assert context.get_response_content_type(i) == "application/json"
        results.append((status, json.loads(body)))
    return results


def png_bytes(seed: int = 7, index: int = 3, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(render_sample(seed, index).image).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_row(image: bytes | None = None, **fields: Any) -> dict[str, Any]:
    """``Content-Type: application/json``: TorchServe hands the decoded object over as ``body``."""
    body = dict(fields)
    if image is not None:
        body["image"] = b64(image)
    return {"body": body}


def form_row(image: bytes | None = None, **fields: Any) -> dict[str, Any]:
    """multipart/form-data: one key per field, every value a bytearray."""
    row: dict[str, Any] = {} if image is None else {"image": bytearray(image)}
    for key, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        row[key] = bytearray(text.encode())
    return row


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid tiny PNG whose header claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[16:29])  # width, height, depth, colour type, compression, filter, interlace
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


@pytest.fixture(autouse=True)
def no_imagenet_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """ImageNet weights are never on this machine in tests, whatever the developer's cache holds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
    monkeypatch.delenv("CONVLENS_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="module")
def saliency_handler():  # type: ignore[no-untyped-def]
    from handlers.attribution import AttributionHandler as SaliencyHandler

    handler = SaliencyHandler()
    handler.initialize(make_context("saliency"))
    return handler


@pytest.fixture(scope="module")
def classify_handler():  # type: ignore[no-untyped-def]
    from handlers.prediction import PredictionHandler as ClassifyHandler

    handler = ClassifyHandler()
    handler.initialize(make_context("classify"))
    return handler


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh datasets directory (``$CONVLENS_DATA_DIR``) for the test."""
    from convlens.corpus import datasets as store

    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "data"
