"""Attribution endpoints (``/predictions/saliency``: vanilla, guided, Grad-CAM chosen with
``params.method``; ``/predictions/occlusion``; any attribution technique the registry declares).

Request: ``{"image": base64, "model": "builtin", "target": int|null, "layer": str|null,
"params": {"method": ..., "alpha": 0.5, "colormap": "inferno", "topk": 5, ...the technique's own}}``
(or the same fields as a multipart form; there ``method`` may also be a field of its own).
Response images: ``input`` (what the model saw), ``map``, ``overlay``, and the technique's signed
maps (``gradient`` for guided, ``logit_drop`` for occlusion).
"""

from __future__ import annotations

from typing import Any

from convlens.pipeline import Output
from convlens.schema import AttributionResponse, TopClass
from handlers.base import ConvLensHandler, encode_b64_png


class AttributionHandler(ConvLensHandler):
    endpoint = "saliency"

    def encode(self, output: Output) -> dict[str, Any]:
        return AttributionResponse(
            images={name: encode_b64_png(image) for name, image in output.images.items()},
            target=int(output.target or 0),
            target_label=str(output.target_label),
            topk=[TopClass(index, label, p) for index, label, p in output.topk],
            scalars=dict(output.scalars),
            elapsed_ms=0.0,
            weights=output.weights,
            model=output.model,
            layer=output.layer,
        ).to_json()
