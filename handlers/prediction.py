"""Prediction endpoints (``/predictions/classify``, any prediction technique the registry declares): an image →
the model's top-k classes, and the probability and logit of the target (or of the top class).

Request: ``{"image": base64, "model": "builtin", "target": int|label|null, "params": {"topk": 5}}`` (or the same
fields as a multipart form). Response: ``AttributionResponse`` with no images. Clients ask this endpoint the info
API (:func:`convlens.registry.info_endpoint`; see :mod:`handlers.catalogue`).
"""

from __future__ import annotations

from convlens.schema import AttributionResponse
from handlers.base import ConvLensHandler


class PredictionHandler(ConvLensHandler):
    response_type = AttributionResponse
