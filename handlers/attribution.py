"""Attribution endpoints (``/predictions/saliency``: vanilla, guided, Grad-CAM chosen with
``params.method``; ``/predictions/occlusion``; any attribution technique the registry declares).

Request: ``{"image": base64, "model": "builtin", "target": int|label|null, "layer": str|null,
"params": {"method": ..., "alpha": 0.5, "colormap": "inferno", "topk": 5, ...the technique's own}}``
(or the same fields as a multipart form; there ``method`` may also be a field of its own).
Response images: ``input`` (what the model saw), ``map``, ``overlay``, and the technique's signed
maps (``gradient`` for guided, ``logit_drop`` for occlusion).
"""

from __future__ import annotations

from convlens.schema import AttributionResponse
from handlers.base import ConvLensHandler


class AttributionHandler(ConvLensHandler):
    response_type = AttributionResponse
