"""Corpus endpoints (any corpus-family technique the registry declares): a dataset → vectors, points, curves.

Request: ``{"model": "builtin", "layer": str|null, "params": {...the technique's own}}`` (plus the images
the technique takes, if any). Response: ``CorpusResponse``.
"""

from __future__ import annotations

from convlens.schema import CorpusResponse
from handlers.base import ConvLensHandler


class CorpusHandler(ConvLensHandler):
    endpoint = "corpus"
    response_type = CorpusResponse
