"""Synthesis endpoints (``/predictions/classviz``, ``neuron``, ``fooling``, ``inversion``, ``deepdream``,
``texture``, ``style`` — whatever the registry declares): images made by optimisation, seconds to minutes.

Request: ``{"model": "builtin", "layer": str|null, "target": int|label|null, "params": {...},
"job": "<id>", "stream": true}`` plus the technique's images (``image``; ``content`` and ``style``,
``style_2`` …). Response: ``SynthesisResponse``.

Long jobs: with ``"stream": true`` the response is newline-delimited JSON sent as the job runs
(TorchServe's intermediate responses, HTTP chunked): ``{"event": "progress", "step", "total",
"preview": base64 PNG}`` lines, at most one every ``PREVIEW_INTERVAL_S``, then the result line
(``"event": "result"``) or an error line. ``{"cancel": "<job>"}`` sent to any ConvLens endpoint stops
the job at its next step; it then answers with what it has (``scalars.cancelled == 1``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from convlens import models as zoo
from convlens import pipeline, registry
from convlens.results import Cancelled
from convlens.schema import SynthesisResponse, job_id
from handlers import jobs
from handlers.base import ConvLensHandler, Job, encode_b64_png

logger = logging.getLogger(__name__)

PREVIEW_INTERVAL_S = 0.5


class SynthesisHandler(ConvLensHandler):
    endpoint = "synthesis"
    response_type = SynthesisResponse

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        job.job_id = job_id(fields.get("job"))
        stream = fields.get("stream")
        job.stream = stream in (True, "true", b"true", "1", b"1")

    def run_group(self, loaded: zoo.LoadedModel, group: list[Job]) -> list[dict[str, Any]]:
        """One job at a time, each with its own progress (and stream); a fast ``batched`` technique (one
        forward pass, no progress worth streaming) answers its whole group in one call."""
        if len(group) > 1 and registry.get(group[0].technique).batched:
            return self.run_batch(loaded, group)
        return [self.run_job(loaded, job) for job in group]

    def run_batch(self, loaded: zoo.LoadedModel, group: list[Job]) -> list[dict[str, Any]]:
        first = group[0]
        try:
            outputs = pipeline.run(loaded, first.technique, [job.inputs for job in group],
                                   [job.request.target for job in group], first.request.layer, first.params)
        finally:
            for job in group:
                if job.job_id is not None:
                    jobs.clear(job.job_id)
        bodies = [self.encode(output) for output in outputs]
        for job, body in zip(group, bodies, strict=True):
            if job.stream:
                body["event"] = "result"
        return bodies

    def run_job(self, loaded: zoo.LoadedModel, job: Job) -> dict[str, Any]:
        last = [0.0]

        def progress(step: int, total: int, preview: torch.Tensor | None) -> None:
            if job.job_id is not None and jobs.is_cancelled(job.job_id):
                raise Cancelled(job.job_id)
            now = time.monotonic()
            due = now - last[0] >= (PREVIEW_INTERVAL_S if preview is not None else 2 * PREVIEW_INTERVAL_S)
            if job.stream and (due or step == total):
                last[0] = now
                self.send_progress(job.index, {"event": "progress", "step": step, "total": total,
                                               "preview": encode_b64_png(preview) if preview is not None else None})

        try:
            [output] = pipeline.run(loaded, job.technique, [job.inputs], [job.request.target], job.request.layer,
                                    job.params, progress=progress)
        finally:
            if job.job_id is not None:
                jobs.clear(job.job_id)
        body = self.encode(output)
        if job.stream:
            body["event"] = "result"
        return body

    def send_progress(self, index: int, message: dict[str, Any]) -> None:
        context = self.context
        if context is None or getattr(context, "request_ids", None) is None:
            return
        from ts.handler_utils.utils import send_intermediate_predict_response

        request_id = context.request_ids.get(index)
        if request_id is None:
            return
        line = (json.dumps(message) + "\n").encode("utf-8")
        # a proxy in front (the gate's nginx) must pass each line on at once, not buffer the stream
        context.set_response_header(index, "X-Accel-Buffering", "no")
        try:
            send_intermediate_predict_response({index: line}, {index: request_id}, "Intermediate response", 200,
                                               context)
        except (OSError, AttributeError):
            logger.warning("%s: could not stream progress of request %d", self.endpoint, index)
