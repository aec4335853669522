"""A fake API client for page tests: canned answers, every call recorded, failures on demand."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import pytest
import streamlit as st
from PIL import Image

from convlens.schema import AttributionResponse, TopClass
from client.http import ApiError, ApiStatus, LayerCatalogue, LayerRow, ModelInfo

CLASSES = ("circle", "square", "triangle", "cross", "ring", "horizontal_stripes", "vertical_stripes",
           "diagonal_stripes", "checkerboard", "dots")


def b64png(colour: tuple[int, int, int], mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (64, 64), colour if mode == "RGB" else colour[0]).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class FakeClient:
    fail: ApiError | None = None
    reachable: bool = True
    calls: list[dict[str, Any]] = field(default_factory=list)

    def ping(self) -> ApiStatus:
        detail = "Healthy" if self.reachable else "unreachable: ConnectionError"
        return ApiStatus(self.reachable, self.reachable, detail)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("builtin", "built-in CNN", "builtin", 10, 64),
                ModelInfo("vgg16", "VGG-16", "missing", 1000, 224, "fetch it with `convlens weights fetch vgg16`")]

    def layers(self, model: str) -> LayerCatalogue:
        rows = [LayerRow("features.2", "ReLU", (32, 32, 32), 7, 2, True),
                LayerRow("features.16", "ReLU", (128, 8, 8), 61, 8, True),
                LayerRow("features", "Sequential", (128, 8, 8), 61, 8, True),
                LayerRow("pool", "AdaptiveAvgPool2d", (128, 1, 1), 89, 89, False)]
        return LayerCatalogue(model, 64, "features", rows, CLASSES)

    def explain(self, endpoint: str, image: bytes, model: str = "builtin", target: int | None = None,
                layer: str | None = None, params: dict[str, Any] | None = None) -> AttributionResponse:
        self.calls.append({"endpoint": endpoint, "model": model, "target": target, "layer": layer,
                           "params": dict(params or {}), "image": image})
        if self.fail is not None:
            raise self.fail
        t = 3 if target is None else target
        images = {} if endpoint == "classify" else {
            "input": b64png((200, 30, 30)), "map": b64png((255, 0, 0), "L"), "overlay": b64png((30, 30, 200))}
        if (params or {}).get("method") == "guided":
            images["gradient"] = b64png((128, 128, 128))
        topk = [TopClass(i, CLASSES[i], p) for i, p in ((3, 0.9), (1, 0.05), (0, 0.03), (2, 0.01), (4, 0.01))]
        return AttributionResponse(images=images, target=t, target_label=CLASSES[t], topk=topk, scalars={},
                                   elapsed_ms=1.0, weights="builtin", model=model,
                                   layer=layer if (params or {}).get("method") == "gradcam" else None)


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()
