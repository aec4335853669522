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

import http
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from convlens import models as zoo
from convlens import pipeline, registry
from convlens.results import Cancelled
from convlens.schema import SynthesisResponse, job_id
from handlers import background, jobs, long_requests, responses, streams
from handlers.base import ConvLensHandler
from handlers.errors import Outcome, internal_error
from handlers.parsing import Job, is_true
from handlers.responses import encode_b64_png

logger = logging.getLogger(__name__)

PREVIEW_INTERVAL_S = 0.5
STREAM_CONTENT_TYPE = "application/x-ndjson"  # a streamed answer: one JSON object per line (docs/serving.md)


class SynthesisHandler(ConvLensHandler):
    response_type = SynthesisResponse

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        job.job_id = job_id(fields.get("job"))
        job.stream = is_true(fields.get("stream"))

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
        if job.progress is not None:  # running on the job runner (see job_work): it streams and cancels
            [output] = pipeline.run(loaded, job.technique, [job.inputs], [job.request.target], job.request.layer,
                                    job.params, progress=job.progress)
            return self.encode(output)
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

    # ------------------------------------------------------------ continuous batching (see handlers/streams.py)

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        self._last_sent: dict[str, float] = {}
        self._opened: set[str] = set()
        self._last_call = time.monotonic()

    def handle(self, data: Sequence[Any], context: Any) -> list[bytes]:
        if not streams.is_continuous(context):
            return super().handle(data, context)
        self.context = context
        self._last_call = time.monotonic()
        rows = list(data or [])
        ids = dict(context.request_ids)
        streams.stop_departed(self.runner, list(ids.values()))
        outcomes: list[Outcome | None] = [None] * len(rows)
        for i, request_id in ids.items():
            live = self.runner.by_request(request_id)
            if live is not None and i < len(rows):
                outcomes[i] = streams.held(live)
        held_before = sum(o is not None for o in outcomes)
        try:
            self.run_jobs(self.read_requests(rows, outcomes), outcomes)
        except Exception:  # noqa: BLE001 — one answer per request, whatever happens
            logger.exception("%s: batch of %d failed", self.endpoint, len(rows))
        held = [o.live for o in outcomes if isinstance(o, streams.Held) and o.live is not None]
        if held and len(held) == held_before and sum(o is not None for o in outcomes) == held_before:
            streams.wait_for_news(held)  # nothing new to answer: wait a tick for the running jobs
        return self.answer_continuous(outcomes)

    def answer_continuous(self, outcomes: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        stop: dict[int, bool | None] = {}
        # TorchServe sets each row's ts_stream_next from its stopping criterion (see streams.Chunk.stop)
        self.context.stopping_criteria = {i: (lambda _answer, i=i: stop.get(i)) for i in range(len(outcomes))}
        for i, outcome in enumerate(outcomes):
            if not isinstance(outcome, streams.Held) or outcome.live is None:
                out.append(responses.write(self.context, i, outcome or internal_error()))
                continue
            piece = streams.chunk(outcome.live, self._last_sent, self._opened)
            if piece is None:  # no answer this call: TorchServe keeps the request open
                self.context.request_ids.pop(i, None)
                out.append(b"")
                continue
            self.context.set_response_content_type(i, piece.content_type)
            self.context.set_response_header(i, "X-Accel-Buffering", "no")
            stop[i] = piece.stop
            if piece.status != 200:
                self.context.set_response_status(piece.status, http.HTTPStatus(piece.status).phrase, idx=i)
            out.append(piece.data)
        return out

    def submit_if_long(self, job: Job, outcomes: list[Outcome | None]) -> bool:
        """On a continuous-batching endpoint every iterative request runs on the job runner (the request loop
        stays free); ``"background": true`` still answers 202 at once, as on any endpoint."""
        if job.background or not streams.is_continuous(self.context) or registry.get(job.technique).batched:
            return super().submit_if_long(job, outcomes)
        live = self.start_job(job, outcomes, job.stream, self.context.request_ids.get(job.index))
        if live is not None:
            self._last_sent[live.job] = time.monotonic()
            outcomes[job.index] = streams.held(live)
        return True

    def job_work(self, job: Job) -> background.Work:
        """The base's job, its progress also queued as stream lines (a preview at most every
        ``PREVIEW_INTERVAL_S``)."""
        def with_lines(live: background.LiveJob) -> background.Answer:
            report, last = long_requests.reporter(live), [0.0]

            def progress(step: int, total: int, preview: torch.Tensor | None) -> None:
                if live.request_id is not None and time.monotonic() - self._last_call > streams.ORPHAN_S:
                    live.stop("disconnected")  # TorchServe stopped calling: it dropped this request
                report(step, total, preview)
                now = time.monotonic()
                due = now - last[0] >= (PREVIEW_INTERVAL_S if preview is not None else 2 * PREVIEW_INTERVAL_S)
                if live.stream and (due or step == total):
                    last[0] = now
                    live.lines.append(streams.progress_line(
                        step, total, encode_b64_png(preview) if preview is not None else None))

            job.progress = progress
            return base_work(live)

        base_work = super().job_work(job)
        return with_lines

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
        context.set_response_content_type(index, STREAM_CONTENT_TYPE)  # the first line's headers are the stream's
        try:
            send_intermediate_predict_response({index: line}, {index: request_id}, "Intermediate response", 200,
                                               context)
        except (OSError, AttributeError):
            logger.warning("%s: could not stream progress of request %d", self.endpoint, index)
