"""Activations endpoints (``/predictions/activations``, ``/predictions/filters``, any activations
technique the registry declares): named grids of images, for one image or none.

Request: ``{"image": base64 (only for techniques that take one), "model": "builtin", "layer": str|null,
"params": {...the technique's own, "colormap", "alpha"}}``. Response: ``GridsResponse`` — each grid as
one PNG mosaic, ``items`` describing its tiles (``row``, ``col``, statistics), ``scalars``.
"""

from __future__ import annotations

from convlens.schema import GridsResponse
from handlers.base import ConvLensHandler


class ActivationsHandler(ConvLensHandler):
    response_type = GridsResponse
