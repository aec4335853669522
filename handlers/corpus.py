"""Corpus endpoints (any corpus-family technique the registry declares): a dataset → vectors, points, curves.

Request: ``{"model": "builtin", "layer": str|null, "params": {...the technique's own}}`` (plus the images
the technique takes, if any: ``/predictions/codes`` takes ``"images": [base64, ...]``). Response:
``CorpusResponse``.

UMAP's numba kernels take tens of seconds to compile in a fresh process: the worker of the endpoint that
serves the embedding compiles them in the background as soon as it starts (``warm_umap: true`` in its
model config, ``serve/model-config/dataset.yaml``), so the first map a user asks for does not pay for it.
``warm_fingerprints: true`` likewise checks every large dataset's files once at start (1M files: ≈ 5 s), so
the first open of one answers from the cache at once (:func:`convlens.corpus.datasets.warm_fingerprints`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from convlens.schema import CorpusResponse
from handlers import archive_upload
from handlers.base import ConvLensHandler
from handlers.long_requests import long_request
from handlers.model_cache import handler_config
from handlers.parsing import Job, declared_type

logger = logging.getLogger(__name__)


class CorpusHandler(ConvLensHandler):
    response_type = CorpusResponse

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        if archive_upload.takes_archive(self.endpoint):  # the worker that imports datasets
            from convlens.corpus.datasets import sweep_orphans

            removed = sweep_orphans()
            if removed:
                logger.info("%s: removed %d unfinished dataset folder(s) of stopped workers: %s", self.endpoint,
                            len(removed), ", ".join(removed))
        if handler_config(context).get("warm_umap", False):
            threading.Thread(target=self._warm_umap, name="warm-umap", daemon=True).start()
        if handler_config(context).get("warm_fingerprints", False):
            from convlens.corpus.datasets import warm_fingerprints

            warm_fingerprints()

    def parse(self, index: int, fields: Mapping[str, Any]) -> Job:
        if archive_upload.takes_archive(self.endpoint):  # a zip sent as a file or as the body
            fields = archive_upload.with_uploaded_archive(fields, declared_type(self.context, index))
        return super().parse(index, fields)

    def must_run_as_job(self, job: Job) -> bool:
        """Asked for, or a request that could outlive the response timeout (:func:`long_request`)."""
        runs_long = long_request(job.technique, job.params)  # checks the params even when a job is asked for
        return job.background or runs_long

    def _warm_umap(self) -> None:
        from convlens.corpus.projection import warm_up

        try:
            logger.info("%s: UMAP kernels compiled in %.1f s", self.endpoint, warm_up())
        except Exception:  # noqa: BLE001 — a failed warm-up only costs the first request its compile time
            logger.exception("%s: UMAP warm-up failed", self.endpoint)
