"""What every ConvLens TorchServe handler shares: decode, validate, group, call the core, encode.

A handler instance serves one TorchServe worker. For each batch TorchServe hands it
a list of requests and expects exactly one response per request, in order. This base:

* learns its endpoint from the model name TorchServe gives it and, from
  :mod:`convlens.registry`, which techniques that endpoint serves (several: chosen with
  ``params.method``) and which images they take;
* reads each request the way TorchServe delivers it (a JSON body arrives as a dict,
  a multipart form as one key per field, a raw body as bytes) and validates it with
  :func:`convlens.schema.parse_request`;
* answers every bad request on its own with a JSON ``{"error": ..., "field": ...}``
  and a 4xx set through ``context.set_response_status(code, phrase, idx=i)``, so one
  bad request never fails the rest of its batch;
* groups the good requests by everything but the image (and the target) and calls the
  core once per group, so TorchServe's batching turns into real tensor batches;
* keeps loaded backbones in a bounded LRU cache and places them on the device of the
  context (``gpu_id`` → ``cuda:{gpu_id}`` when CUDA is available, else the CPU);
* answers ``{"info": "models" | "layers" | "classes" | "techniques", ...}`` requests (the
  catalogue the dashboard needs) without any image.

A family's handler (``handlers/<family>.py``) only says how its outputs become a response body.

Unexpected exceptions become a 500 with a short JSON message; the traceback goes to
the worker log, never into a response.
"""

from __future__ import annotations

import base64
import dataclasses
import http
import io
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler

from convlens import models as zoo
from convlens import pipeline, registry
from convlens import zoo as registered
from convlens.images import encode_png
from convlens.results import Cancelled
from convlens.schema import (
    SchemaError,
    TechniqueRequest,
    TopClass,
    check_model_name,
    form_text,
    job_id,
    parse_request,
    resolve_target,
)
from handlers import background, form_fields, jobs, known_fields, long_requests, pixel_budget, priority, request_images

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 3
WEIGHTS_CHOICES = ("pretrained", "random")
INFO_KINDS = ("models", "layers", "classes", "techniques")
JSON_CONTENT_TYPE = "application/json"


class RequestError(Exception):
    """A request that gets an error response (``status``) instead of a result."""

    def __init__(self, status: int, message: str, field_name: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field_name
        self.headers = dict(headers or {})  # e.g. Retry-After with a 503

    @classmethod
    def from_schema(cls, exc: SchemaError) -> RequestError:
        return cls(400, exc.message, exc.field)

    def to_json(self) -> dict[str, Any]:
        return {"error": _bounded(self.message), "field": self.field}


@dataclass
class Job:
    """One good request of the batch, decoded and validated as far as possible without the model."""

    index: int
    request: TechniqueRequest
    inputs: dict[str, Image.Image]
    weights: str
    params: dict[str, Any]
    technique: str
    seconds: float = 0.0  # time spent on this request alone (decode, encode)
    job_id: str | None = None  # a long job's client-chosen id (to cancel it)
    stream: bool = False  # send progress as it runs (long jobs)
    background: bool = False  # run as a job: answered at once with its id, polled with {"status": id}
    progress: Any = None  # the job's progress callback (convlens.results.Progress) when it runs as a job

    @property
    def group_key(self) -> tuple[Any, ...]:
        """Requests with equal keys run as one batch; the images and the target may differ."""
        return (self.request.model, self.weights, self.technique, self.request.layer,
                json.dumps(self.params, sort_keys=True, default=str),
                self.request.target is None and self.request.target_label is None)


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelCache:
    """A bounded LRU cache of loaded models, keyed by (name, weights choice, version); ``capacity`` (the handler's
    ``cache_size`` or ``$CONVLENS_MODEL_CACHE_SIZE``) bounds how many distinct models a worker holds."""

    capacity: int
    loader: Callable[[str, str], zoo.LoadedModel]
    _items: OrderedDict[tuple[str, str, str], zoo.LoadedModel] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, weights: str) -> zoo.LoadedModel:
        """A registered model is keyed by its folder's version too: edited files are loaded afresh."""
        key = (name, weights, zoo.model_version(name))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = self.loader(name, weights)
        with self._lock:
            for stale in [k for k in self._items if k[:2] == key[:2]]:
                del self._items[stale]
            self._items[key] = loaded
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                evicted, _ = self._items.popitem(last=False)
                logger.info("model cache full (%d): evicted %s", self.capacity, evicted)
        return loaded

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return [k[:2] for k in self._items]

    def __len__(self) -> int:
        return len(self._items)


def device_from_context(context: Any) -> torch.device:
    """``cuda:{gpu_id}`` when TorchServe assigned a GPU and CUDA is usable, else the CPU."""
    props = getattr(context, "system_properties", None) or {}
    gpu_id = props.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def handler_config(context: Any) -> dict[str, Any]:
    """The ``handler:`` section of the archive's model-config YAML (empty if none)."""
    config = getattr(context, "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, Mapping) else None
    return dict(section) if isinstance(section, Mapping) else {}


def request_fields(row: Any, content_type: str = "") -> dict[str, Any]:
    """The request's fields, however TorchServe delivered them.

    JSON body (``Content-Type: application/json``) → ``row["body"]`` is the decoded
    object; multipart form → one key per field; any other body → ``row["body"]`` holds
    the bytes, which are either a JSON object or the image itself (its other fields then
    come from the query string). ``content_type`` is the request's declared type: a body
    declared JSON that TorchServe could not decode (not JSON, not UTF-8) and url-encoded
    forms are refused as a bad ``body``, not mistaken for an image.
    """
    if not isinstance(row, Mapping):
        raise SchemaError("body", "expected a JSON object or a multipart form")
    duplicates = form_fields.duplicated_fields(row)
    if duplicates:
        raise SchemaError(duplicates[0], "was sent more than once in one form; send each field once")
    if content_type == "application/x-www-form-urlencoded":
        raise SchemaError("body", "url-encoded forms are not accepted; send JSON or multipart/form-data")
    if content_type == "application/json" and isinstance(row.get("body"), (bytes, bytearray)):
        try:
            decoded = json.loads(bytes(row["body"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SchemaError("body", "is declared application/json but is not valid UTF-8 JSON") from None
        row = {**row, "body": decoded}
    key = "body" if "body" in row else "data" if "data" in row else None
    if key is None:
        return dict(row)
    body = row[key]
    rest = {k: v for k, v in row.items() if k != key}
    if isinstance(body, Mapping):
        return {**rest, **body}
    if isinstance(body, (bytes, bytearray)):
        head = bytes(body[:64]).lstrip()
        if head.startswith(b"{"):
            try:
                decoded = json.loads(bytes(body))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise SchemaError("body", f"is not valid JSON: {exc}") from None
            if not isinstance(decoded, Mapping):
                raise SchemaError("body", "expected a JSON object")
            return {**rest, **decoded}
        return {**rest, "image": body}  # a raw image upload
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except json.JSONDecodeError:
            raise SchemaError("body", "expected a JSON object, got a string") from None
        if isinstance(decoded, Mapping):
            return {**rest, **decoded}
    raise SchemaError("body", f"expected a JSON object, got {type(body).__name__}")


# What a client may make a worker build with random weights (each build allocates the whole network; the
# LRU cache holds `cache_size` of them). The large ones (VGG, ResNet-50/101, AlexNet: 100-550 MB each) only
# if the operator lists them: CONVLENS_RANDOM_WEIGHTS_MODELS="builtin,resnet18" or "all".
DEFAULT_RANDOM_WEIGHTS_MODELS = ("builtin", "resnet18", "squeezenet1_1", "googlenet", "densenet121")


def random_weights_models() -> tuple[str, ...]:
    raw = os.environ.get("CONVLENS_RANDOM_WEIGHTS_MODELS", "").strip()
    if not raw:
        return DEFAULT_RANDOM_WEIGHTS_MODELS
    if raw == "all":
        return zoo.model_names()
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def check_buildable(name: str) -> str:
    """``name`` if this server may build it for a request (its weights are here, or it is on the random-weights
    allow-list), else a RequestError naming ``model``: the info API never builds what a request could not."""
    if name in random_weights_models() or zoo.find_weights(name) is not None:
        return name
    raise RequestError(400, f"{name}: its weights are not on this server and random weights are not offered for it "
                            f"(allowed: {', '.join(random_weights_models()) or 'none'}; the operator sets "
                            "CONVLENS_RANDOM_WEIGHTS_MODELS)", "model")


def weights_choice(value: Any) -> str:
    value = form_text(value)
    if value is None or value == "":
        return "pretrained"
    if value not in WEIGHTS_CHOICES:
        raise SchemaError("weights", f"must be one of {', '.join(WEIGHTS_CHOICES)}; got {value!r}")
    return str(value)


def encode_b64_png(image: torch.Tensor) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def _load(name: str, weights: str, device: torch.device) -> zoo.LoadedModel:
    return zoo.load_model(name, weights=weights, device=device)  # type: ignore[arg-type]


class ConvLensHandler(BaseHandler):  # type: ignore[misc]
    """Base of the endpoint handlers; a family's handler implements :meth:`encode`."""

    endpoint = "base"  # replaced by the model name TorchServe registered the archive under

    def __init__(self) -> None:
        super().__init__()
        self.context: Any = None
        self.device = torch.device("cpu")
        self.cache = ModelCache(DEFAULT_CACHE_SIZE, self._load_model)
        self._layers_info: dict[str, dict[str, Any]] = {}
        self._reserved_pixels = 0  # decoded pixels of the batch being answered (see handlers/pixel_budget.py)
        self.initialized = False

    # ------------------------------------------------------------------ lifecycle

    def initialize(self, context: Any) -> None:
        self.context = context
        form_fields.install()  # so two parts with one name are refused, not merged
        self.endpoint = getattr(context, "model_name", None) or self.endpoint
        self.device = device_from_context(context)
        config = handler_config(context)
        size = config.get("cache_size", os.environ.get("CONVLENS_MODEL_CACHE_SIZE", DEFAULT_CACHE_SIZE))
        try:
            capacity = max(1, int(size))
        except (TypeError, ValueError):
            logger.warning("cache_size %r is not an integer; using %d", size, DEFAULT_CACHE_SIZE)
            capacity = DEFAULT_CACHE_SIZE
        self.cache = ModelCache(capacity, self._load_model)
        self.runner = background.JobRunner(self.endpoint, int(config.get("max_jobs", 1)),
                                           int(config.get("max_waiting_jobs", 4)),
                                           float(config.get("max_job_seconds", background.DEFAULT_MAX_SECONDS)))
        level, threads = priority.apply(config)  # long-job endpoints yield the CPU to quick ones
        logger.info("%s: priority %s, torch threads %s", self.endpoint, level, threads or torch.get_num_threads())
        self.initialized = True
        for name in config.get("preload", []) or []:
            try:
                self.cache.get(str(name), "pretrained")
                logger.info("%s: preloaded %s on %s", self.endpoint, name, self.device)
            except Exception as exc:  # noqa: BLE001 — a missing checkpoint must not stop the worker
                logger.warning("%s: could not preload %s: %s", self.endpoint, name, exc)
                continue
            if config.get("warmup", True):
                self.warm_up(str(name))
        logger.info("%s handler ready on %s, model cache size %d", self.endpoint, self.device, capacity)

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

    def _load_model(self, name: str, weights: str) -> zoo.LoadedModel:
        started = time.perf_counter()
        loaded = _load(name, weights, self.device)
        logger.info("loaded %s (%s weights) on %s in %.0f ms", name, loaded.weights, self.device,
                    (time.perf_counter() - started) * 1e3)
        return loaded

    def get_model(self, name: str, weights: str) -> zoo.LoadedModel:
        """A loaded model from the cache; an unknown or unavailable model and missing weights are a 4xx naming
        ``model``."""
        try:
            return self.cache.get(name, weights)
        except zoo.WeightsNotFoundError as exc:
            raise RequestError(400, f"{exc}", "model") from None
        except SchemaError as exc:  # unknown, or a registered model that fails its check: the reason
            raise RequestError.from_schema(exc) from None

    # ------------------------------------------------------------------ TorchServe entry point

    def handle(self, data: Sequence[Any], context: Any) -> list[bytes]:
        """One JSON response per request, in order; never raises."""
        self.context = context
        rows = list(data or [])
        outcomes: list[Outcome | None] = [None] * len(rows)
        try:
            jobs = self.preprocess(rows, outcomes)
            self.inference(jobs, outcomes)
        except Exception:  # noqa: BLE001 — the contract: one answer per request, whatever happens
            logger.exception("%s: batch of %d failed", self.endpoint, len(rows))
            for i, outcome in enumerate(outcomes):
                if outcome is None:
                    outcomes[i] = _internal_error()
        finally:
            jobs = []  # the decoded images go before the memory they used is handed back
            self._release_pixels()
        return self.postprocess(outcomes)

    def _release_pixels(self) -> None:
        """The batch is answered: its images' pixels go back to the budget (and big batches' memory to the OS)."""
        pixels, self._reserved_pixels = self._reserved_pixels, 0
        pixel_budget.worker_budget().release(pixels)
        if pixels > pixel_budget.TRIM_ABOVE_PIXELS:
            pixel_budget.return_memory_to_os()

    def preprocess(self, rows: Sequence[Any], outcomes: list[Outcome | None]) -> list[Job]:
        """Parse and decode each request; bad ones and info requests are answered here."""
        jobs = []
        for i, row in enumerate(rows):
            if outcomes[i] is not None:  # answered elsewhere (a running job's request, see handlers/streams.py)
                continue
            started = time.perf_counter()
            try:
                fields = request_fields(row, self._declared_type(i))
                if "info" in fields:
                    outcomes[i] = Outcome(200, self.info(fields))
                    continue
                if "cancel" in fields:
                    outcomes[i] = Outcome(200, cancel(fields, self.runner))
                    continue
                if "status" in fields:
                    outcomes[i] = job_status(fields)
                    continue
                job = self.parse(i, fields)
                job.seconds = time.perf_counter() - started
                jobs.append(job)
            except SchemaError as exc:
                outcomes[i] = _error(RequestError.from_schema(exc))
            except RequestError as exc:
                outcomes[i] = _error(exc)
            except RecursionError:
                outcomes[i] = _error(RequestError(400, "is nested too deeply", "body"))
            except Exception:  # noqa: BLE001
                logger.exception("%s: request %d could not be read", self.endpoint, i)
                outcomes[i] = _internal_error()
        return jobs

    def _declared_type(self, idx: int) -> str:
        """The request's Content-Type (lower case, no parameters), "" when unknown."""
        try:
            headers = self.context.get_all_request_header(idx) if self.context is not None else None
        except (AttributeError, IndexError, KeyError, TypeError):
            return ""
        for name, value in (headers or {}).items():
            if isinstance(name, str) and name.lower() == "content-type" and isinstance(value, str):
                return value.split(";")[0].strip().lower()
        return ""

    def parse(self, index: int, fields: Mapping[str, Any]) -> Job:
        technique, inputs_taken, optional = self.technique_for(fields)
        request = parse_request(fields, inputs_taken, optional)
        known_fields.refuse_unknown(fields, known_fields.request_fields_of((*inputs_taken, *optional)))
        weights = weights_choice(fields.get("weights"))
        if weights == "random" and request.model not in random_weights_models():
            raise SchemaError("weights", f"random weights are not offered for {request.model} on this server "
                                         f"(allowed: {', '.join(random_weights_models()) or 'none'}; "
                                         "the operator sets CONVLENS_RANDOM_WEIGHTS_MODELS)")
        inputs = self.decode_images(request)
        params = {k: v for k, v in request.params.items() if k != registry.METHOD_PARAM}
        job = Job(index, request, inputs, weights, params, technique, job_id=job_id(fields.get("job")),
                  background=fields.get("background") in (True, "true", b"true", "1", b"1"))
        self.prepare_job(job, fields)
        return job

    def decode_images(self, request: TechniqueRequest) -> dict[str, Any]:
        """The request's images decoded and reduced to what its model needs, their pixels reserved from the
        worker's budget until the batch is answered (see :mod:`handlers.pixel_budget`)."""
        side = request_images.decode_side(request.model, registry.endpoint_family(self.endpoint)
                                          if self.endpoint in registry.endpoints() else "attribution")
        try:
            inputs, pixels = request_images.decode_inputs(request.images, side, pixel_budget.worker_budget(),
                                                          pixel_budget.request_limit())
        except pixel_budget.Refused as exc:
            raise RequestError(exc.status, exc.message, exc.field, exc.headers) from None
        self._reserved_pixels += pixels
        return inputs

    def technique_for(self, fields: Mapping[str, Any]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(technique, images it needs, images it may take) for a request; see :meth:`choose_technique`."""
        spec = self.choose_technique(fields)
        return spec.name, spec.inputs, spec.optional_inputs

    def choose_technique(self, fields: Mapping[str, Any]) -> registry.Spec:
        """The technique of this endpoint the request asks for (``params.method`` or a form field)."""
        specs = registry.endpoints().get(self.endpoint)
        if not specs:
            raise RequestError(404, f"endpoint {self.endpoint!r} serves no technique", None)
        params = fields.get("params")
        method = params.get(registry.METHOD_PARAM) if isinstance(params, Mapping) else None
        if method is None and isinstance(form_text(params), str) and '"method"' in form_text(params):
            try:
                decoded = json.loads(form_text(params))
            except json.JSONDecodeError:
                decoded = None
            method = decoded.get(registry.METHOD_PARAM) if isinstance(decoded, Mapping) else None
        if method is None:
            method = form_text(fields.get(registry.METHOD_PARAM))
        if method is None or method == "":
            return registry.default_technique(self.endpoint)
        names = tuple(s.name for s in specs)
        if method not in names:
            raise SchemaError(f"params.{registry.METHOD_PARAM}", f"must be one of {', '.join(names)}; got {method!r}")
        return next(s for s in specs if s.name == method)

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        """Endpoint-specific checks that need no model."""

    def must_run_as_job(self, job: Job) -> bool:
        """Whether a request runs as a job (answered at once with its id): asked for with ``"background": true``;
        an endpoint adds the requests that could outlive the response timeout (see docs/serving.md)."""
        return job.background

    def submit_if_long(self, job: Job, outcomes: list[Outcome | None]) -> bool:
        """Start ``job`` on this worker's job runner if it must run as one, answering 202 with its id."""
        try:
            if not self.must_run_as_job(job):
                return False
        except (SchemaError, RequestError) as exc:
            outcomes[job.index] = Outcome(*long_requests.refusal(exc))
            return True
        live = self.start_job(job, outcomes)
        if live is not None:
            outcomes[job.index] = Outcome(202, long_requests.accepted(live, self.endpoint))
        return True

    def start_job(self, job: Job, outcomes: list[Outcome | None], stream: bool = False,
                  request_id: str | None = None) -> background.LiveJob | None:
        """``job`` on this worker's job runner (an id made for it if it has none); None with its refusal (503
        when the runner is full, 409 when the id is taken) in ``outcomes`` if it could not start."""
        job.job_id = job.job_id or long_requests.new_job_id(self.endpoint)
        try:
            return self.runner.submit(job.job_id, self.job_work(job), stream, request_id)
        except (background.RunnerFull, background.JobConflict) as exc:
            outcomes[job.index] = Outcome(*long_requests.refusal(exc))
            return None

    def job_work(self, job: Job) -> background.Work:
        """What the job runner calls: the request run alone, its progress reported and cancellable."""
        def work(live: background.LiveJob) -> background.Answer:
            alone = dataclasses.replace(job, index=0, progress=job.progress or long_requests.reporter(live))
            out: list[Outcome | None] = [None]
            with torch.enable_grad():
                self._run_group_safely([alone], out)
            outcome = out[0] or _internal_error()
            return outcome.status, outcome.body
        return work

    def inference(self, jobs: list[Job], outcomes: list[Outcome | None]) -> None:  # type: ignore[override]
        """Run each group of compatible requests as one batch, gradients on."""
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in [job for job in jobs if not self.submit_if_long(job, outcomes)]:
            groups.setdefault(job.group_key, []).append(job)
        with torch.enable_grad():
            for group in groups.values():
                self._run_group_safely(group, outcomes)

    def _run_group_safely(self, group: list[Job], outcomes: list[Outcome | None]) -> None:
        first = group[0]
        try:
            loaded = self.get_model(first.request.model, first.weights)
        except RequestError as exc:
            for job in group:
                outcomes[job.index] = _error(exc)
            return
        except Exception:  # noqa: BLE001
            logger.exception("%s: loading %s failed", self.endpoint, first.request.model)
            for job in group:
                outcomes[job.index] = _internal_error(f"model {first.request.model!r} could not be loaded")
            return
        runnable = []
        for job in group:  # per-request checks first, so one bad target does not fail its group
            if job.request.target_label is not None:
                try:
                    index = resolve_target(job.request.target_label, loaded.classes, loaded.name)
                except SchemaError as exc:
                    outcomes[job.index] = _error(RequestError(400, exc.message, exc.field))
                    continue
                job.request = dataclasses.replace(job.request, target=index, target_label=None)
            target = job.request.target
            if target is not None and target >= len(loaded.classes):
                outcomes[job.index] = _error(RequestError(
                    400, f"must be in [0, {len(loaded.classes) - 1}] for {loaded.name}, got {target}", "target"))
            else:
                runnable.append(job)
        if not runnable:
            return
        try:
            self._answer(loaded, runnable, outcomes)
        except Exception as exc:  # noqa: BLE001 — SchemaError and RequestError included
            if len(runnable) > 1:  # find out which request it was: run them one by one
                for job in runnable:
                    self._run_one(loaded, job, outcomes)
            else:
                outcomes[runnable[0].index] = self._failure(exc, runnable[0])

    def _run_one(self, loaded: zoo.LoadedModel, job: Job, outcomes: list[Outcome | None]) -> None:
        try:
            self._answer(loaded, [job], outcomes)
        except Exception as exc:  # noqa: BLE001
            outcomes[job.index] = self._failure(exc, job)

    def _failure(self, exc: BaseException, job: Job) -> Outcome:
        if isinstance(exc, SchemaError):
            return _error(RequestError.from_schema(exc))
        if isinstance(exc, RequestError):
            return _error(exc)
        if isinstance(exc, Cancelled):  # a job stopped with nothing to show (its runner says why)
            return _error(RequestError(409, "cancelled", "cancel"))
        logger.error("%s: request %d (%s) failed", self.endpoint, job.index, job.request.model,
                     exc_info=(type(exc), exc, exc.__traceback__))
        return _internal_error()

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

    response_type: type = dict  # the family's response dataclass (``convlens.schema``)

    def encode(self, output: pipeline.Output) -> dict[str, Any]:
        """One output → the family's response body: the fields its response type declares
        (``elapsed_ms`` is filled in afterwards)."""
        values: dict[str, Any] = {
            "technique": output.technique, "images": {k: encode_b64_png(v) for k, v in output.images.items()},
            "scalars": dict(output.scalars), "target": output.target, "target_label": output.target_label,
            "topk": [TopClass(index, label, p) for index, label, p in output.topk], "items": list(output.items),
            "series": {name: [list(xs), list(ys)] for name, (xs, ys) in output.series.items()},
            "vectors": output.vectors, "points": output.points, "elapsed_ms": 0.0, "weights": output.weights,
            "model": output.model, "layer": output.layer, "labels": dict(output.labels),
        }
        names = [f.name for f in dataclasses.fields(self.response_type)]
        return dict(self.response_type(**{name: values[name] for name in names}).to_json())

    def postprocess(self, outcomes: Sequence[Outcome | None]) -> list[bytes]:  # type: ignore[override]
        out = []
        for i, outcome in enumerate(outcomes):
            if outcome is None:  # cannot happen; still one answer per request
                logger.error("%s: request %d got no outcome", self.endpoint, i)
                outcome = _internal_error()
            self._set_status(i, outcome.status)
            self._set_headers(i, outcome.headers)
            out.append(json.dumps(outcome.body).encode("utf-8"))
        return out

    def _set_headers(self, idx: int, headers: Mapping[str, str]) -> None:
        if headers and self.context is not None and getattr(self.context, "request_processor", None) is not None:
            for name, value in headers.items():
                self.context.set_response_header(idx, name, value)

    def _set_status(self, idx: int, status: int) -> None:
        context = self.context
        if context is None or getattr(context, "request_processor", None) is None:
            return
        try:
            context.set_response_content_type(idx, JSON_CONTENT_TYPE)
            if status != 200:
                context.set_response_status(status, http.HTTPStatus(status).phrase, idx=idx)
        except (IndexError, KeyError, TypeError):
            logger.warning("%s: no request processor for response %d", self.endpoint, idx)

    # ------------------------------------------------------------------ info API

    def info(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        kind = form_text(fields.get("info"))
        known_fields.refuse_unknown(fields, known_fields.INFO_FIELDS)
        if kind not in INFO_KINDS:
            raise SchemaError("info", f"must be one of {', '.join(INFO_KINDS)}; got {kind!r}")
        if kind == "models":
            return {"models": model_rows(),
                    "methods": [s.name for s in registry.of_family("attribution")],
                    "weights_choices": list(WEIGHTS_CHOICES)}
        if kind == "techniques":
            return {"techniques": [s.describe() for s in registry.registry().values()],
                    "families": dict(registry.FAMILY_DESCRIPTIONS), "endpoints": list(registry.all_endpoints())}
        name = check_model_name(form_text(fields.get("model")) or "builtin")
        if name not in zoo.REGISTRY:
            loaded = self.get_model(name, "pretrained")  # a registered model: its card says it all
            if kind == "classes":
                return {"model": name, "classes": list(loaded.classes)}
            return {**self._layers(name, loaded), "classes": list(loaded.classes)}
        spec = zoo.get_spec(name)
        if kind == "classes":
            return {"model": name, "classes": list(spec.classes)}
        return {**self._layers(name), "classes": list(spec.classes)}

    def _layers(self, name: str, loaded: zoo.LoadedModel | None = None) -> dict[str, Any]:
        """The layer catalogue does not depend on the weights: computed once from a random-weights build."""
        if loaded is not None or name not in self._layers_info:
            loaded = loaded or next((self.cache.get(n, w) for n, w in self.cache.keys() if n == name), None) \
                or zoo.load_model(check_buildable(name), weights="random")
            self._layers_info[name] = {
                "model": name,
                "input_size": loaded.preprocessing.input_size,
                "default_cam_layer": loaded.default_cam_layer,
                "first_conv_layer": loaded.first_conv_layer,
                "layers": [{"name": row.name, "type": row.kind, "output_shape": list(row.output_shape),
                            "receptive_field": row.receptive_field, "stride": row.stride,
                            "spatial": row.is_spatial, "conv": pipeline.is_conv(loaded, row.name)}
                           for row in loaded.layers],
            }
        return self._layers_info[name]


def model_rows() -> list[dict[str, Any]]:
    """The info API's model list: the built-in zoo (weights found or not), then every registered model with its
    card, or ``status: unavailable`` and the reason."""
    rows = [builtin_model_row(name) for name in zoo.REGISTRY]
    for entry in registered.list_models():
        if entry.name in zoo.REGISTRY:
            continue
        card = entry.card
        rows.append({"name": entry.name, "description": card.description if card else "", "weights": "registered",
                     "status": entry.status, "reason": entry.reason,
                     "num_classes": len(card.classes) if card else None,
                     "input_size": card.input_size if card else None,
                     "card": card.to_json() if card else None, "fetch_hint": None})
    return rows


def builtin_model_row(name: str) -> dict[str, Any]:
    spec = zoo.get_spec(name)
    found = zoo.find_weights(name)
    kind = "missing" if found is None else ("builtin" if spec.tv_weights is None else "imagenet")
    hint = None
    if found is None:
        hint = ("retrain it with `convlens builtin train`" if spec.tv_weights is None else
                f"fetch it with `convlens weights fetch {name}` (or `make weights`) on a machine with internet")
    card = {**zoo.builtin_card(name), "weights_sha256": None if found is None else registered.sha256_file(found)}
    return {"name": name, "description": spec.description, "weights": kind, "status": "available",
            "num_classes": len(spec.classes), "input_size": spec.preprocessing.input_size,
            "fetch_hint": hint, "card": card}


def cancel(fields: Mapping[str, Any], runner: background.JobRunner | None = None) -> dict[str, Any]:
    """``{"cancel": "<job>"}``: ask the running job with that id to stop at its next step (whichever worker runs
    it). An id that is not running (unknown, or finished) is a 404 naming ``cancel``, and leaves nothing behind."""
    job = job_id(fields.get("cancel"), "cancel")
    if job is None:
        raise SchemaError("cancel", "needs the id of the job to cancel")
    known_fields.refuse_unknown(fields, ("cancel",))
    live = runner.find(job) if runner is not None else None
    if live is not None and not live.done.is_set() and jobs.is_live(job):
        live.stop("cancelled")
    elif not jobs.request_cancel(job):
        raise RequestError(404, f"no running job {job!r} (unknown, or already finished): nothing to cancel",
                           "cancel")
    return {"cancelled": True, "job": job}


def job_status(fields: Mapping[str, Any]) -> Outcome:
    """``{"status": "<job>"}``: a job's state and progress and, once it ended, its answer (any endpoint)."""
    job = job_id(fields.get("status"), "status")
    if job is None:
        raise SchemaError("status", "needs the id of the job")
    known_fields.refuse_unknown(fields, ("status",))
    record = jobs.read(job)
    if record is None:
        raise RequestError(404, f"no job {job!r} (unknown, or finished more than "
                                f"{jobs.RECORD_TTL_S // 60} minutes ago)", "status")
    return Outcome(200, long_requests.status_body(record))


MAX_ERROR_CHARS = 500  # messages quote the client's values: a 10 kB layer name is not sent back whole


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else f"{message[:MAX_ERROR_CHARS]}… (truncated)"


def _error(exc: RequestError) -> Outcome:
    return Outcome(exc.status, exc.to_json(), exc.headers)


def _internal_error(message: str = "internal error; see the server log") -> Outcome:
    return Outcome(500, {"error": message, "field": None})
