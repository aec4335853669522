"""Corpus endpoints (any corpus-family technique the registry declares): a dataset → vectors, points, curves.

Request: ``{"model": "builtin", "layer": str|null, "params": {...the technique's own}}`` (plus the images
the technique takes, if any). Response: ``CorpusResponse``.
"""

from __future__ import annotations

from typing import Any

from convlens.pipeline import Output
from convlens.schema import CorpusResponse
from handlers.base import ConvLensHandler, encode_b64_png


class CorpusHandler(ConvLensHandler):
    endpoint = "corpus"

    def encode(self, output: Output) -> dict[str, Any]:
        return CorpusResponse(
            technique=output.technique,
            images={name: encode_b64_png(image) for name, image in output.images.items()},
            scalars=dict(output.scalars),
            series={name: [list(xs), list(ys)] for name, (xs, ys) in output.series.items()},
            items=list(output.items),
            elapsed_ms=0.0,
            weights=output.weights,
            model=output.model,
            layer=output.layer,
            vectors=output.vectors,
            points=output.points,
        ).to_json()
