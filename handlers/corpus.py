"""Corpus endpoints (any corpus-family technique the registry declares): a dataset → vectors, points, curves.

Request: ``{"model": "builtin", "layer": str|null, "params": {...the technique's own}}`` (plus the images
the technique takes, if any: ``/predictions/codes`` takes ``"images": [base64, ...]``). Response:
``CorpusResponse``.

UMAP's numba kernels take tens of seconds to compile in a fresh process: the worker of the endpoint that
serves the embedding compiles them in the background as soon as it starts (``warm_umap: true`` in its
model config, ``serve/model-config/dataset.yaml``), so the first map a user asks for does not pay for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from convlens.schema import CorpusResponse
from handlers.base import ConvLensHandler, handler_config

logger = logging.getLogger(__name__)


class CorpusHandler(ConvLensHandler):
    endpoint = "corpus"
    response_type = CorpusResponse

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if handler_config(context).get("warm_umap", False):
            threading.Thread(target=self._warm_umap, name="warm-umap", daemon=True).start()

    def _warm_umap(self) -> None:
        from convlens.corpus.projection import warm_up

        try:
            logger.info("%s: UMAP kernels compiled in %.1f s", self.endpoint, warm_up())
        except Exception:  # noqa: BLE001 — a failed warm-up only costs the first request its compile time
            logger.exception("%s: UMAP warm-up failed", self.endpoint)
