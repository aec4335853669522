"""The one HTTP client of ConvLens: the dashboard and ``convlens call`` both use it.

Talks to TorchServe's inference API with the bearer token TorchServe writes to
``key_file.json``. Imports only ``convlens.schema`` from the core (no torch), so it
is cheap to import in the dashboard.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from convlens.outputs import Outputs
from convlens.schema import (
    BATCH_INPUT,
    CLASSIFY,
    CODES,
    DATASET_ENDPOINT,
    INFO_ENDPOINT,
    MODEL_FILES,
    SALIENCY_ENDPOINT,
    AttributionResponse,
    CorpusResponse,
    GridsResponse,
    SynthesisResponse,
    route,
)

DEFAULT_URL = "http://127.0.0.1:8080"
ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RETRY_STATUSES = (503, 507)  # a worker died or is restarting: TorchServe recovers within seconds
RETRY_DELAY_S = 3.0
DATASET_TIMEOUT_S = 900.0  # the dataset endpoint's responseTimeout (serve/model-config/dataset.yaml)
_REPO = Path(__file__).resolve().parents[1]
DEFAULT_KEY_FILE = _REPO / "serve" / "run" / "key_file.json"  # written by TorchServe (`convlens serve start`)


def default_url() -> str:
    """``$CONVLENS_URL``, else the loopback inference API on ``$CONVLENS_INFERENCE_PORT`` (8080)."""
    if os.environ.get("CONVLENS_URL"):
        return os.environ["CONVLENS_URL"]
    return f"http://127.0.0.1:{os.environ.get('CONVLENS_INFERENCE_PORT') or 8080}"


def default_key_file() -> Path:
    """``$CONVLENS_KEY_FILE``, else ``key_file.json`` in ``$CONVLENS_RUN_DIR`` or in ``serve/run``."""
    if os.environ.get("CONVLENS_KEY_FILE"):
        return Path(os.environ["CONVLENS_KEY_FILE"])
    if os.environ.get("CONVLENS_RUN_DIR"):
        return Path(os.environ["CONVLENS_RUN_DIR"]) / "key_file.json"
    return DEFAULT_KEY_FILE


class ApiError(Exception):
    """The API answered with an error (``status`` ≥ 400) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} (field: {field})" if field else message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ApiStatus:
    reachable: bool
    authorised: bool
    detail: str


def read_token(key_file: str | Path | None = None) -> str | None:
    """The inference key: ``$CONVLENS_TOKEN``, else the ``key_file.json`` TorchServe wrote
    (``key_file``, else :func:`default_key_file`)."""
    if os.environ.get("CONVLENS_TOKEN"):
        return os.environ["CONVLENS_TOKEN"]
    path = Path(key_file) if key_file else default_key_file()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return str(data["inference"]["key"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class ModelInfo:
    """A model of the info API (``{"info": "models"}``): a built-in one, or one of the models directory."""

    name: str
    description: str
    weights: str  # "builtin", "imagenet" or "missing"; "registered" for a model of the models directory
    num_classes: int | None  # None: a registered model that is unavailable
    input_size: int | None
    fetch_hint: str | None = None
    status: str = "available"  # "unavailable": a registered model that fails its check (``reason`` says why)
    reason: str | None = None
    card: dict[str, Any] | None = None  # registered models: architecture, classes, weights SHA-256, ...

    @property
    def available(self) -> bool:
        return self.status == "available"

    @classmethod
    def from_json(cls, m: Mapping[str, Any]) -> ModelInfo:
        def number(key: str) -> int | None:
            return None if m.get(key) is None else int(m[key])

        return cls(m["name"], m.get("description") or "", m["weights"], number("num_classes"), number("input_size"),
                   m.get("fetch_hint"), m.get("status", "available"), m.get("reason"), m.get("card"))


@dataclass(frozen=True)
class ModelEntry:
    """A model of the server's models directory: its ``card`` (JSON) when it checks, else ``reason``
    (``"field: message"``)."""

    name: str
    status: str
    reason: str | None = None
    card: dict[str, Any] | None = None
    removable: bool = True  # False for the models shipped with ConvLens

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEntry:
        return cls(data["name"], data["status"], data.get("reason"), data.get("card"),
                   bool(data.get("removable", True)))


@dataclass(frozen=True)
class ModelFiles:
    """:meth:`ConvLensClient.models_list`: the models directory, and whether the operator lets clients add and
    remove models (``CONVLENS_MODEL_UPLOAD`` on the server)."""

    models: list[ModelEntry]
    upload_enabled: bool


def weights_format(filename: str) -> str:
    """The ``weights_format`` of a weights file: ``safetensors`` or ``pt`` (``.pt``/``.pth``)."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pt", ".pth"):
        return "pt"
    raise ValueError(f"a weights file ends in .safetensors, .pt or .pth, got {filename!r}")


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]
    receptive_field: int
    stride: int
    spatial: bool
    conv: bool = False


@dataclass(frozen=True)
class LayerCatalogue:
    model: str
    input_size: int
    default_cam_layer: str
    layers: list[LayerRow]
    classes: tuple[str, ...]
    first_conv_layer: str | None = None

    @property
    def cam_layers(self) -> list[str]:
        """Layers Grad-CAM can use: spatial ones with more than one position."""
        return [r.name for r in self.layers if r.spatial and len(r.output_shape) == 3 and min(r.output_shape[1:]) > 1]

    @property
    def conv_layers(self) -> list[str]:
        """Layers with a 2-D convolution weight (for filter galleries)."""
        return [r.name for r in self.layers if r.conv]


@dataclass(frozen=True)
class TechniqueInfo:
    """A technique as the server declares it (``convlens.registry.Spec.describe``)."""

    name: str
    title: str
    family: str
    endpoint: str
    inputs: tuple[str, ...]
    layer: str
    default_layer: str
    reference: str
    params: tuple[dict[str, Any], ...]
    optional_inputs: tuple[str, ...] = ()  # images it may take (e.g. neighbours' uploaded query)
    outputs: Outputs = Outputs()  # what its results hold (convlens.outputs): images, scalars, labels, series, items
    page: str = ""  # the dashboard page that shows it specially (registry ``Spec.page``); "" its family's page

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TechniqueInfo:
        return cls(data["name"], data["title"], data["family"], data["endpoint"], tuple(data["inputs"]),
                   data["layer"], data["default_layer"], data.get("reference", ""), tuple(data.get("params", [])),
                   tuple(data.get("optional_inputs", [])), Outputs.from_json(data.get("outputs", [])),
                   str(data.get("page", "")))


@dataclass(frozen=True)
class Progress:
    """One progress message of a streamed long job: ``preview`` is PNG bytes (or None)."""

    step: int
    total: int
    preview: bytes | None


@dataclass(frozen=True)
class JobStatus:
    """A long job (``{"status": id}``): ``state`` queued | running | done | cancelled | failed; once it ended,
    ``status`` (the HTTP status its answer has) and ``result`` (that answer's JSON)."""

    job: str
    state: str
    step: int
    total: int
    endpoint: str | None = None
    elapsed_s: float = 0.0
    status: int | None = None
    result: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobStatus:
        return cls(str(data["job"]), str(data["state"]), int(data.get("step") or 0), int(data.get("total") or 0),
                   data.get("endpoint"), float(data.get("elapsed_s") or 0.0),
                   None if data.get("status") is None else int(data["status"]), data.get("result"))


JOB_POLL_S = 0.5  # how often :meth:`ConvLensClient.wait` asks how a job is doing


class ConvLensClient:
    """Typed calls to the ConvLens endpoints. One instance per process (it pools connections)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session = requests.Session()

    def _headers(self) -> dict[str, str]:
        # Without an explicit token, re-read the key file each call: a restarted server has new keys.
        token = self.token or read_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def ping(self) -> ApiStatus:
        try:
            r = self._session.get(f"{self.base_url}/ping", headers=self._headers(), timeout=5)
        except requests.RequestException as exc:
            return ApiStatus(False, False, f"unreachable: {exc.__class__.__name__}")
        if r.status_code == 200:
            return ApiStatus(True, True, r.json().get("status", "ok"))
        return ApiStatus(True, False, _error_message(r))

    def post(self, endpoint: str, body: Mapping[str, Any], timeout: float | None = None,
             on_job: Callable[[JobStatus], None] | None = None) -> dict[str, Any]:
        """POST a JSON body to ``/predictions/ENDPOINT`` and return the decoded JSON answer.

        A 503/507 (a worker died or is restarting) is retried once after a short pause; if it
        fails again the error says so. A request the server runs as a job (HTTP 202 with its id: it could
        outlive the response timeout) is waited for (:meth:`wait`, ``on_job`` sees each poll) and its answer
        returned, so a caller sees no difference but the time it takes.
        """
        if not ENDPOINT_NAME.fullmatch(endpoint):
            raise ValueError(f"not an endpoint name: {endpoint!r}")
        r = self._post_once(endpoint, body, timeout)
        if _retryable(r):
            time.sleep(RETRY_DELAY_S)
            r = self._post_once(endpoint, body, timeout)
            if _retryable(r):
                raise ApiError(r.status_code, f"the server could not answer, twice ({_error_message(r)}); "
                                              "a worker may have crashed: try again in a minute, or see the server log")
        if r.status_code >= 400:
            raise _api_error(r)
        try:
            data = dict(r.json())
        except ValueError as exc:
            raise ApiError(r.status_code, "the API answered with something that is not JSON") from exc
        if r.status_code == 202 and isinstance(data.get("job"), str):
            return self.wait(data["job"], on_job)
        return data

    # Long jobs (docs/serving.md): answered at once with an id, polled, cancellable from any endpoint.

    def submit(self, endpoint: str, body: Mapping[str, Any]) -> str:
        """Run a request as a job (``"background": true``); its id, at once."""
        if not ENDPOINT_NAME.fullmatch(endpoint):
            raise ValueError(f"not an endpoint name: {endpoint!r}")
        r = self._post_once(endpoint, {**dict(body), "background": True})
        if r.status_code >= 400:
            raise _api_error(r)
        return str(r.json()["job"])

    def job_status(self, job: str) -> JobStatus:
        """How far job ``job`` got (any endpoint answers; asked of the quick info endpoint)."""
        return JobStatus.from_json(self.post(INFO_ENDPOINT, {"status": job}))

    def wait(self, job: str, on_job: Callable[[JobStatus], None] | None = None, timeout: float | None = None,
             poll_s: float = JOB_POLL_S) -> dict[str, Any]:
        """Poll job ``job`` until it ended; its answer (an :class:`ApiError` if that is an error). ``timeout``
        (seconds, default none) cancels the job and raises when it is exceeded."""
        started = time.monotonic()
        while True:
            status = self.job_status(job)
            if on_job is not None:
                on_job(status)
            if status.finished:
                result = dict(status.result or {})
                if (status.status or 500) >= 400:
                    raise ApiError(status.status or 500, str(result.get("error", status.state)), result.get("field"))
                return result
            if timeout is not None and time.monotonic() - started > timeout:
                self.cancel(job)
                raise ApiError(0, f"job {job} did not finish within {timeout:g} s; it was cancelled")
            time.sleep(poll_s)

    def _post_once(self, endpoint: str, body: Mapping[str, Any], timeout: float | None = None) -> requests.Response:
        try:
            return self._session.post(f"{self.base_url}/predictions/{endpoint}", json=dict(body),
                                      headers=self._headers(), timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise ApiError(0, f"the ConvLens API at {self.base_url} is unreachable ({exc.__class__.__name__})") from exc

    def techniques(self) -> list[TechniqueInfo]:
        """Every technique the server offers, from its registry."""
        data = self.post(INFO_ENDPOINT, {"info": "techniques"})
        return [TechniqueInfo.from_json(t) for t in data["techniques"]]

    def request(self, endpoint: str, images: Mapping[str, bytes | list[bytes]] | None = None, model: str = "builtin",
                target: int | str | None = None, layer: str | None = None, params: Mapping[str, Any] | None = None,
                weights: str | None = None) -> dict[str, Any]:
        """Any endpoint: named images (``{"image": ...}``; none for e.g. filters; a list for ``images``) → the
        JSON answer."""
        body: dict[str, Any] = {name: [_b64(d) for d in data] if isinstance(data, list) else _b64(data)
                                for name, data in (images or {}).items()}
        body.update({"model": model, "target": target, "layer": layer, "params": dict(params or {})})
        if weights is not None:
            body["weights"] = weights
        return self.post(endpoint, body)

    def grids(self, endpoint: str, image: bytes | None = None, model: str = "builtin", layer: str | None = None,
              params: Mapping[str, Any] | None = None, weights: str | None = None) -> GridsResponse:
        """An activations-family endpoint (``activations`` with an image, ``filters`` without)."""
        images = {"image": image} if image is not None else {}
        return GridsResponse.from_json(self.request(endpoint, images, model, None, layer, params, weights))

    def corpus(self, endpoint: str, model: str = "builtin", layer: str | None = None,
               params: Mapping[str, Any] | None = None, images: Mapping[str, bytes | list[bytes]] | None = None,
               on_job: Callable[[JobStatus], None] | None = None) -> CorpusResponse:
        """A corpus-family endpoint (e.g. ``faithfulness``): curves, vectors or points over a dataset. A long one
        runs as a job on the server: waited for, ``on_job`` sees its progress."""
        body: dict[str, Any] = {name: [_b64(d) for d in data] if isinstance(data, list) else _b64(data)
                                for name, data in (images or {}).items()}  # a list for a batch input (codes)
        body.update({"model": model, "target": None, "layer": layer, "params": dict(params or {})})
        return CorpusResponse.from_json(self.post(endpoint, body, **_job_kwargs(on_job)))

    def synthesis(self, technique: TechniqueInfo | str, images: Mapping[str, bytes] | None = None,
                  model: str = "builtin", target: int | str | None = None, layer: str | None = None,
                  params: Mapping[str, Any] | None = None, job: str | None = None,
                  on_progress: Callable[[Progress], None] | None = None) -> SynthesisResponse:
        """A synthesis technique (``TechniqueInfo`` or ``"endpoint"`` / ``"endpoint:method"``). With
        ``on_progress`` the answer is streamed and ``on_progress`` sees every progress message; ``job`` names the
        run so :meth:`cancel` can stop it (it then answers with what it has, ``scalars["cancelled"] == 1``)."""
        if isinstance(technique, TechniqueInfo):
            endpoint, implied = route(technique.name, technique.endpoint)
        else:
            endpoint, _, method = technique.partition(":")
            endpoint, implied = route(method, endpoint) if method else (endpoint, {})
        body: dict[str, Any] = {name: base64.b64encode(data).decode("ascii") for name, data in (images or {}).items()}
        body.update({"model": model, "target": target, "layer": layer, "params": {**implied, **dict(params or {})}})
        if job is not None:
            body["job"] = job
        if on_progress is None:
            return SynthesisResponse.from_json(self.post(endpoint, body))
        return self._stream(endpoint, {**body, "stream": True}, on_progress)

    def _stream(self, endpoint: str, body: Mapping[str, Any], on_progress: Callable[[Progress], None]
                ) -> SynthesisResponse:
        if not ENDPOINT_NAME.fullmatch(endpoint):
            raise ValueError(f"not an endpoint name: {endpoint!r}")
        try:
            r = self._session.post(f"{self.base_url}/predictions/{endpoint}", json=dict(body), headers=self._headers(),
                                   timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise ApiError(0, f"the ConvLens API at {self.base_url} is unreachable ({exc.__class__.__name__})") from exc
        with r:
            if r.status_code >= 400:
                raise _api_error(r)
            buffer = b""
            try:
                for chunk in r.iter_content(chunk_size=None):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        result = self._message(line, on_progress)
                        if result is not None:
                            return result
            except requests.RequestException as exc:
                raise ApiError(0, f"the stream from {endpoint} broke off ({exc.__class__.__name__})") from exc
            result = self._message(buffer, on_progress)
        if result is None:
            raise ApiError(502, f"the stream from {endpoint} ended without a result")
        return result

    @staticmethod
    def _message(line: bytes, on_progress: Callable[[Progress], None]) -> SynthesisResponse | None:
        if not line.strip():
            return None
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ApiError(502, "the stream held something that is not JSON") from exc
        if "error" in data:
            raise ApiError(400 if data.get("field") else 500, str(data["error"]), data.get("field"))
        if data.get("event") == "progress":
            preview = base64.b64decode(data["preview"]) if data.get("preview") else None
            on_progress(Progress(int(data["step"]), int(data["total"]), preview))
            return None
        data.pop("event", None)
        return SynthesisResponse.from_json(data)

    def cancel(self, job: str) -> bool:
        """Ask the long job ``job`` to stop (any endpoint answers at once; asked of the info endpoint). False if no
        such job is running (unknown, or already finished)."""
        try:
            self.post(INFO_ENDPOINT, {"cancel": job})
        except ApiError as exc:
            if exc.status == 404 and exc.field == "cancel":
                return False
            raise
        return True

    def codes(self, images: list[bytes], model: str = "builtin", layer: str | None = None,
              params: Mapping[str, Any] | None = None) -> CorpusResponse:
        """``/predictions/codes``: a batch of encoded images → one CNN code (float vector) each."""
        endpoint, implied = route(CODES, CODES)
        return CorpusResponse.from_json(self.request(endpoint, {BATCH_INPUT: list(images)}, model, None, layer,
                                                     {**implied, **dict(params or {})}))

    def dataset(self, method: str, model: str = "builtin", layer: str | None = None,
                params: Mapping[str, Any] | None = None, image: bytes | None = None,
                on_job: Callable[[JobStatus], None] | None = None) -> CorpusResponse:
        """``/predictions/dataset``: dataset management (``datasets``) and the techniques over a named dataset
        (``embedding``, ``neighbours``, ``top_patches``); ``image``: an uploaded query, where one is taken."""
        endpoint, implied = route(method, DATASET_ENDPOINT)
        body: dict[str, Any] = {"model": model, "layer": layer, "params": {**implied, **dict(params or {})}}
        if image is not None:
            body["image"] = _b64(image)
        # making a large dataset or a first map of one takes minutes: wait as long as the server does
        return CorpusResponse.from_json(self.post(endpoint, body, timeout=max(self.timeout, DATASET_TIMEOUT_S),
                                                  **_job_kwargs(on_job)))

    def models(self) -> list[ModelInfo]:
        """Every model the server knows, with the weights it would use ("missing" if not installed, "registered"
        for the models directory's, with their card or the reason they are unavailable)."""
        data = self.post(INFO_ENDPOINT, {"info": "models"})
        return [ModelInfo.from_json(m) for m in data["models"]]

    # Your own models (the models directory; see docs/models.md). Adding and removing need the operator's
    # CONVLENS_MODEL_UPLOAD=1; otherwise the server refuses them naming ``params.action``.

    def models_list(self) -> ModelFiles:
        """The models of the server's models directory (available or not), and whether upload is on."""
        response = self.dataset(MODEL_FILES, params={"action": "list"})
        return ModelFiles([ModelEntry.from_json(row) for row in response.items],
                          bool(response.scalars.get("upload_enabled")))

    def model_add(
        self,
        name: str,
        source: str,
        weights: bytes,
        classes: Sequence[str] | str,
        *,
        weights_format: str = "safetensors",
        input_size: int | None = None,
        resize_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels: int | None = None,
        kwargs: Mapping[str, Any] | None = None,
        description: str = "",
        key: str | None = None,
        strip_prefix: Sequence[str] = (),
        cam_layer: str | None = None,
        code_layer: str | None = None,
    ) -> dict[str, Any]:
        """Add a model: ``source`` ``torchvision:NAME`` or ``timm:NAME``, ``weights`` the bytes of a .safetensors
        file (or, with ``weights_format="pt"``, a .pt/.pth state dict), ``classes`` a list of names or one name a
        line. The server checks it as ``convlens model add`` does and answers with its card (JSON); a refusal is
        an :class:`ApiError` naming the parameter (``params.weights``, ``params.source``, ...)."""
        params: dict[str, Any] = {
            "action": "add", "name": name, "source": source, "weights": _b64(weights), "weights_format": weights_format,
            "classes": classes if isinstance(classes, str) else "\n".join(classes), "description": description,
        }
        optional = {"input_size": input_size, "resize_size": resize_size, "channels": channels, "key": key,
                    "mean": None if mean is None else list(mean), "std": None if std is None else list(std),
                    "kwargs": dict(kwargs) if kwargs else None, "strip_prefix": list(strip_prefix) or None,
                    "cam_layer": cam_layer, "code_layer": code_layer}
        params.update({k: v for k, v in optional.items() if v is not None})
        return dict(self.dataset(MODEL_FILES, params=params).items[0])

    def model_remove(self, name: str) -> ModelFiles:
        """Remove a model of the models directory; the directory as it is afterwards."""
        response = self.dataset(MODEL_FILES, params={"action": "remove", "name": name})
        return ModelFiles([ModelEntry.from_json(row) for row in response.items],
                          bool(response.scalars.get("upload_enabled")))

    def layers(self, model: str) -> LayerCatalogue:
        """A model's layer catalogue and class names."""
        data = self.post(INFO_ENDPOINT, {"info": "layers", "model": model})
        rows = [LayerRow(r["name"], r["type"], tuple(r["output_shape"]), int(r["receptive_field"]), int(r["stride"]),
                         bool(r["spatial"]), bool(r.get("conv", False))) for r in data["layers"]]
        return LayerCatalogue(data["model"], int(data["input_size"]), data["default_cam_layer"], rows,
                              tuple(data["classes"]), data.get("first_conv_layer"))

    def explain(
        self,
        endpoint: str,
        image: bytes,
        model: str = "builtin",
        target: int | str | None = None,
        layer: str | None = None,
        params: Mapping[str, Any] | None = None,
        weights: str | None = None,
    ) -> AttributionResponse:
        """An attribution endpoint (or classify). ``weights="random"`` asks explicitly for an untrained network."""
        return AttributionResponse.from_json(self.request(endpoint, {"image": image}, model, target, layer, params,
                                                          weights))

    # The info API: what the server offers, without an image.

    def classes(self, model: str = "builtin") -> list[str]:
        return list(self.post(INFO_ENDPOINT, {"info": "classes", "model": model})["classes"])

    def classify(self, image: bytes, model: str = "builtin", topk: int = 5, target: int | str | None = None,
                 weights: str | None = None) -> AttributionResponse:
        endpoint, implied = route(CLASSIFY, CLASSIFY)
        return self.explain(endpoint, image, model=model, target=target, params={**implied, "topk": topk},
                            weights=weights)

    def saliency(
        self, image: bytes, method: str, model: str = "builtin", target: int | str | None = None,
        layer: str | None = None, weights: str | None = None, **params: Any,
    ) -> AttributionResponse:
        endpoint, implied = route(method, SALIENCY_ENDPOINT)
        return self.explain(endpoint, image, model, target, layer, {**implied, **params}, weights)


def _api_error(r: requests.Response) -> ApiError:
    field = None
    try:
        data = r.json()
        field = data.get("field") if isinstance(data, dict) else None
    except ValueError:
        pass
    return ApiError(r.status_code, _error_message(r), field)


def _job_kwargs(on_job: Callable[[JobStatus], None] | None) -> dict[str, Any]:
    """``on_job`` for :meth:`ConvLensClient.post` only when given (a subclass's ``post`` may not take it)."""
    return {} if on_job is None else {"on_job": on_job}


def _retryable(r: requests.Response) -> bool:
    """503/507, or TorchServe's 500 "Worker died." (it answers a killed worker's job with 500 or 507)."""
    if r.status_code in RETRY_STATUSES:
        return True
    if r.status_code == 500:
        try:
            return bool(r.json().get("message") == "Worker died.")
        except (ValueError, AttributeError):
            return False
    return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error_message(r: requests.Response) -> str:
    try:
        data = r.json()
        if isinstance(data, dict):
            return str(data.get("error") or data.get("message") or data)
    except ValueError:
        pass
    return f"HTTP {r.status_code}: {r.text[:200]}"

