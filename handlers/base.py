"""The base of every ConvLens TorchServe handler: parse, group, run, answer.

A handler instance serves one TorchServe worker. For each batch TorchServe hands it a list of requests and
expects exactly one response per request, in order. This base learns its endpoint from the model name
TorchServe gives it and, from :mod:`convlens.registry`, which techniques that endpoint serves (several: chosen
with ``params.method``); then, for each batch:

* reads and validates each request (:mod:`handlers.parsing`); info, cancel and status requests are answered at
  once (:mod:`handlers.catalogue`, :mod:`handlers.job_control`), bad ones with their own 4xx
  (:mod:`handlers.errors`), so one bad request never fails the rest of its batch;
* groups the good requests by everything but the image and the target and calls :func:`convlens.pipeline.run`
  once per group, so TorchServe's batching turns into real tensor batches (a failing group is retried one
  request at a time, to answer only the bad one with its error); long requests run as jobs
  (:mod:`handlers.job_submission`);
* encodes each result as its family's response (:mod:`handlers.responses`).

Models come from the worker's bounded cache, on the context's device (:mod:`handlers.model_cache`). A family's
handler (``handlers/<family>.py``) names its response type and adds what its family needs.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler

from convlens import models as zoo
from convlens import pipeline, registry
from convlens.schema import AttributionResponse, SchemaError, TechniqueRequest, job_id, parse_request, resolve_target
from handlers import (
    background,
    form_fields,
    job_control,
    known_fields,
    model_cache,
    parsing,
    pixel_budget,
    priority,
    request_images,
    responses,
)
from handlers.catalogue import Catalogue
from handlers.errors import Outcome, RequestError, error, expected_failure, internal_error
from handlers.job_submission import JobSubmission
from handlers.parsing import Job

logger = logging.getLogger(__name__)


class ConvLensHandler(JobSubmission, BaseHandler):  # type: ignore[misc]
    """Base of the endpoint handlers; a family's handler names its :attr:`response_type`. Its steps are
    :meth:`read_requests`, :meth:`run_jobs` and :meth:`write_responses` (TorchServe calls :meth:`handle`)."""

    endpoint = "base"  # replaced by the model name TorchServe registered the archive under
    response_type: type[Any] = AttributionResponse  # the family's response dataclass (``convlens.schema``)

    def __init__(self) -> None:
        super().__init__()
        self.context: Any = None
        self.device = torch.device("cpu")
        self.cache = model_cache.ModelCache(model_cache.DEFAULT_CACHE_SIZE, model_cache.timed_loader(self.device))
        self.catalogue = Catalogue(self.get_model, lambda name: self.cache.cached(name))
        self._reserved_pixels = 0  # decoded pixels of the batch being answered (see handlers/pixel_budget.py)
        self.initialized = False

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, context: Any) -> None:
        self.context = context
        form_fields.install()  # so two parts with one name are refused, not merged
        self.endpoint = getattr(context, "model_name", None) or self.endpoint
        self.device = model_cache.device_from_context(context)
        config = model_cache.handler_config(context)
        self.cache = model_cache.ModelCache(model_cache.cache_capacity(config), model_cache.timed_loader(self.device))
        self.runner = background.JobRunner(self.endpoint, int(config.get("max_jobs", 1)),
                                           int(config.get("max_waiting_jobs", 4)),
                                           float(config.get("max_job_seconds", background.DEFAULT_MAX_SECONDS)))
        level, threads = priority.apply(config)  # long-job endpoints yield the CPU to quick ones
        logger.info("%s: priority %s, torch threads %s", self.endpoint, level, threads or torch.get_num_threads())
        self.initialized = True
        self.preload(config.get("preload", []) or [], bool(config.get("warmup", True)))
        logger.info("%s handler ready on %s, model cache size %d", self.endpoint, self.device, self.cache.capacity)

    def preload(self, names: Sequence[Any], warm: bool) -> None:
        """Load the model-config's ``preload`` models, and answer warm-up requests on each if ``warm``."""
        for name in names:
            try:
                self.cache.get(str(name), "pretrained")
                logger.info("%s: preloaded %s on %s", self.endpoint, name, self.device)
            except Exception as exc:  # noqa: BLE001 — a missing checkpoint must not stop the worker
                logger.warning("%s: could not preload %s: %s", self.endpoint, name, exc)
                continue
            if warm:
                self.warm_up(str(name))

    def warm_up(self, name: str) -> None:
        """Answer a few requests on a grey image, so the first real request is not the slow one."""
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode("ascii")
        rows = [{"body": {"image": image, "model": name, "params": params}} for params in self.warmup_params]
        context, self.context = self.context, None
        try:
            started = time.perf_counter()
            self.handle(rows, None)
            logger.info("%s: warmed up %s in %.0f ms", self.endpoint, name, (time.perf_counter() - started) * 1e3)
        finally:
            self.context = context

    @property
    def warmup_params(self) -> tuple[dict[str, Any], ...]:
        """One request per technique the endpoint serves."""
        specs = registry.endpoints().get(self.endpoint, [])
        return tuple({registry.METHOD_PARAM: s.name} for s in specs if "image" in s.inputs) or ({},)

    def get_model(self, name: str, weights: str) -> zoo.LoadedModel:
        """A loaded model from the cache; an unknown or unavailable model and missing weights are a 4xx naming
        ``model``."""
        return self.cache.fetch(name, weights)

    # ------------------------------------------------------------------ TorchServe entry point

    def handle(self, data: Sequence[Any], context: Any) -> list[bytes]:
        """One JSON response per request, in order; never raises."""
        self.context = context
        rows = list(data or [])
        outcomes: list[Outcome | None] = [None] * len(rows)
        try:
            jobs = self.read_requests(rows, outcomes)
            self.run_jobs(jobs, outcomes)
        except Exception:  # noqa: BLE001 — the contract: one answer per request, whatever happens
            logger.exception("%s: batch of %d failed", self.endpoint, len(rows))
            for i, outcome in enumerate(outcomes):
                if outcome is None:
                    outcomes[i] = internal_error()
        finally:
            jobs = []  # the decoded images go before the memory they used is handed back
            self._release_pixels()
        return self.write_responses(outcomes)

    def write_responses(self, outcomes: Sequence[Outcome | None]) -> list[bytes]:
        return responses.write_all(self.context, outcomes)

    def _release_pixels(self) -> None:
        """The batch is answered: its images' pixels go back to the budget (and big batches' memory to the OS)."""
        pixels, self._reserved_pixels = self._reserved_pixels, 0
        pixel_budget.worker_budget().release(pixels)
        if pixels > pixel_budget.TRIM_ABOVE_PIXELS:
            pixel_budget.return_memory_to_os()

    # ------------------------------------------------------------------ reading requests

    def read_requests(self, rows: Sequence[Any], outcomes: list[Outcome | None]) -> list[Job]:
        """Parse and decode each request; bad ones and those that need no model are answered here."""
        jobs = []
        for i, row in enumerate(rows):
            if outcomes[i] is not None:  # answered elsewhere (a running job's request, see handlers/streams.py)
                continue
            started = time.perf_counter()
            try:
                read = self.read_request(i, row)
            except RecursionError:
                read = error(RequestError(400, "is nested too deeply", "body"))
            except Exception as exc:  # noqa: BLE001
                read = expected_failure(exc) or self._unexpected(exc, f"request {i} could not be read")
            if isinstance(read, Job):
                read.seconds = time.perf_counter() - started
                jobs.append(read)
            else:
                outcomes[i] = read
        return jobs

    def read_request(self, index: int, row: Any) -> Job | Outcome:
        """Request ``index`` as a job to run, or the answer of one that needs no model (info, cancel, status)."""
        fields = parsing.request_fields(row, parsing.declared_type(self.context, index))
        if "info" in fields:
            return Outcome(200, self.catalogue.info(fields))
        return job_control.answer(fields, self.runner) or self.parse(index, fields)

    def parse(self, index: int, fields: Mapping[str, Any]) -> Job:
        spec = parsing.choose_technique(self.endpoint, fields)
        request = parse_request(fields, spec.inputs, spec.optional_inputs)
        known_fields.refuse_unknown(fields, known_fields.request_fields_of((*spec.inputs, *spec.optional_inputs)))
        weights = parsing.weights_choice(fields.get("weights"))
        model_cache.check_random_weights(request.model, weights)
        inputs = self.decode_images(request)
        params = {k: v for k, v in request.params.items() if k != registry.METHOD_PARAM}
        job = Job(index, request, inputs, weights, params, spec.name, job_id=job_id(fields.get("job")),
                  background=parsing.is_true(fields.get("background")))
        self.prepare_job(job, fields)
        return job

    def decode_images(self, request: TechniqueRequest) -> dict[str, Any]:
        """The request's images decoded and reduced to what its model needs, their pixels reserved from the
        worker's budget until the batch is answered (see :mod:`handlers.pixel_budget`)."""
        side = request_images.decode_side(request.model, registry.endpoint_family(self.endpoint))
        try:
            inputs, pixels = request_images.decode_inputs(request.images, side, pixel_budget.worker_budget(),
                                                          pixel_budget.request_limit())
        except pixel_budget.Refused as exc:
            raise RequestError(exc.status, exc.message, exc.field, exc.headers) from None
        self._reserved_pixels += pixels
        return inputs

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        """Endpoint-specific checks that need no model."""

    # ------------------------------------------------------------------ running them

    def run_jobs(self, jobs: list[Job], outcomes: list[Outcome | None]) -> None:
        """Run each group of compatible requests as one batch, gradients on; long ones are submitted as jobs."""
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in [job for job in jobs if not self.submit_if_long(job, outcomes)]:
            groups.setdefault(job.group_key, []).append(job)
        with torch.enable_grad():
            for group in groups.values():
                self.run_group_safely(group, outcomes)

    def run_alone(self, job: Job) -> Outcome:
        out: list[Outcome | None] = [None]
        with torch.enable_grad():
            self.run_group_safely([job], out)
        return out[0] or internal_error()

    def run_group_safely(self, group: list[Job], outcomes: list[Outcome | None]) -> None:
        """Answer every request of ``group``: a failing batch is retried one by one, so only the bad one fails."""
        first = group[0]
        try:
            loaded = self.get_model(first.request.model, first.weights)
        except Exception as exc:  # noqa: BLE001
            failed = expected_failure(exc) or self._unexpected(
                exc, f"loading {first.request.model} failed", f"model {first.request.model!r} could not be loaded")
            for job in group:
                outcomes[job.index] = failed
            return
        runnable = self._with_targets(loaded, group, outcomes)
        if not runnable:
            return
        try:
            self._answer(loaded, runnable, outcomes)
        except Exception as exc:  # noqa: BLE001 — SchemaError and RequestError included
            if len(runnable) == 1:
                outcomes[runnable[0].index] = self._failure(exc, runnable[0])
                return
            for job in runnable:  # find out which request it was: run them one by one
                try:
                    self._answer(loaded, [job], outcomes)
                except Exception as exc_one:  # noqa: BLE001
                    outcomes[job.index] = self._failure(exc_one, job)

    def _with_targets(self, loaded: zoo.LoadedModel, group: list[Job], outcomes: list[Outcome | None]) -> list[Job]:
        """The jobs whose target the model has (a label resolved to its index); the others answered with a 400,
        so one bad target does not fail its group."""
        runnable = []
        for job in group:
            try:
                if job.request.target_label is not None:
                    index = resolve_target(job.request.target_label, loaded.classes, loaded.name)
                    job.request = parsing.with_target(job.request, index)
                pipeline.check_target(loaded, job.request.target)
            except SchemaError as exc:
                outcomes[job.index] = error(exc)
                continue
            runnable.append(job)
        return runnable

    def _failure(self, exc: BaseException, job: Job) -> Outcome:
        return expected_failure(exc) or self._unexpected(exc, f"request {job.index} ({job.request.model}) failed")

    def _unexpected(self, exc: BaseException, what: str, message: str | None = None) -> Outcome:
        """A 500 for a bug; the traceback goes to the worker log, never into the response."""
        logger.error("%s: %s", self.endpoint, what, exc_info=(type(exc), exc, exc.__traceback__))
        return internal_error(message) if message else internal_error()

    def _answer(self, loaded: zoo.LoadedModel, jobs: list[Job], outcomes: list[Outcome | None]) -> None:
        started = time.perf_counter()
        bodies = self.run_group(loaded, jobs)
        shared = (time.perf_counter() - started) / len(jobs)
        for job, body in zip(jobs, bodies, strict=True):
            body["elapsed_ms"] = round((job.seconds + shared) * 1e3, 3)
            outcomes[job.index] = Outcome(200, body)

    def run_group(self, loaded: zoo.LoadedModel, jobs: list[Job]) -> list[dict[str, Any]]:
        """Answer a group of compatible requests (one technique, one set of parameters) in one call."""
        first = jobs[0]
        outputs = pipeline.run(loaded, first.technique, [job.inputs for job in jobs],
                               [job.request.target for job in jobs], first.request.layer, first.params,
                               **({} if first.progress is None else {"progress": first.progress}))
        return [self.encode(output) for output in outputs]

    def encode(self, output: pipeline.Output) -> dict[str, Any]:
        """One output → the family's response body (``elapsed_ms`` is filled in afterwards)."""
        return responses.body(output, self.response_type)
