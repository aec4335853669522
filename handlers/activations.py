"""Activations endpoints (``/predictions/activations``, ``/predictions/filters``, any activations
technique the registry declares): named grids of images, for one image or none.

Request: ``{"image": base64 (only for techniques that take one), "model": "builtin", "layer": str|null,
"params": {...the technique's own, "colormap", "alpha"}}``. Response: ``GridsResponse`` — each grid as
one PNG mosaic, ``items`` describing its tiles (``row``, ``col``, statistics), ``scalars``.
"""

from __future__ import annotations

from typing import Any

from convlens.pipeline import Output
from convlens.schema import GridsResponse
from handlers.base import ConvLensHandler, encode_b64_png


class ActivationsHandler(ConvLensHandler):
    endpoint = "activations"

    def encode(self, output: Output) -> dict[str, Any]:
        return GridsResponse(
            technique=output.technique,
            images={name: encode_b64_png(image) for name, image in output.images.items()},
            items=list(output.items),
            scalars=dict(output.scalars),
            elapsed_ms=0.0,
            weights=output.weights,
            model=output.model,
            layer=output.layer,
        ).to_json()
