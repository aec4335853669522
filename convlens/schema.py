"""Request/response types and their validation.

Standard library only (no torch, no PIL): the dashboard, the handlers and external
clients import this module cheaply. Every validation failure raises
:class:`SchemaError` naming the offending field, which the serving layer turns into
an HTTP 400 with a JSON body ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # built-in and registered models; always fullmatch
WeightsKind = Literal["imagenet", "builtin", "registered", "random"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # encoded image size accepted on the wire
MAX_IMAGE_PIXELS = 25_000_000  # decoded width * height; larger is treated as a decompression bomb
MAX_TOP_K = 20
# Server-side bounds of the synthesis family (4xx naming the field beyond them).
MAX_STEPS = 2000
MAX_SYNTHESIS_SIZE = 512
MAX_SYNTHESIS_INPUT_SIDE = 2 * MAX_SYNTHESIS_SIZE  # the longer side a synthesis input image keeps
MAX_STYLES = 4
BATCH_INPUT = "images"  # an input of this name is a list of images (``convlens.registry.BATCH_INPUT``)
METHOD_PARAM = "method"  # ``params.method`` picks the technique an endpoint runs (``convlens.registry.METHOD_PARAM``)
# The endpoints and techniques the client's convenience methods name (``client.http``: classify, saliency, codes,
# dataset, models_*): declared once here, checked against the registry by tests/core/test_schema_names.py.
INFO_ENDPOINT = "classify"  # answers the info API ({"info": ...}), job status and cancel
CLASSIFY = "classify"  # the prediction technique (top-k classes) and its endpoint
SALIENCY_ENDPOINT = "saliency"  # the gradient attribution techniques, one picked by params.method
CODES = "codes"  # one CNN code per image of a batch: a technique and its endpoint
DATASET_ENDPOINT = "dataset"  # the techniques over a named dataset, and dataset and model management
MODEL_FILES = "model_files"  # the dataset endpoint's technique that lists, adds and removes models
DATASETS = "datasets"  # the dataset endpoint's technique that lists, makes and removes datasets (and thumbnails)
MAX_BATCH_IMAGES = 256
# The technique families (``convlens.registry.FAMILIES``), named here so the dashboard can key its layout by them.
PREDICTION, ATTRIBUTION, ACTIVATIONS, SYNTHESIS, CORPUS = "prediction", "attribution", "activations", "synthesis", \
    "corpus"
DATASET_PARAM = "dataset"  # the param of the corpus techniques that names a dataset
PATCH_FIELD_SHARE = 0.5  # a top-patches unit's receptive field is at most this share of the input side


def patch_layer(rows: Iterable[tuple[str, int, bool]], input_size: int) -> str | None:
    """The default layer of top patches: the deepest spatial layer whose receptive field is at most
    :data:`PATCH_FIELD_SHARE` of the input side, so that a patch is a part of an image, not all of it (the
    shallowest spatial layer when none is that small; None without spatial layers). ``rows``: (name, receptive
    field in px, spatial) in forward order, as the layer catalogue lists them (core and dashboard share this rule).
    """
    spatial = [(name, field) for name, field, is_spatial in rows if is_spatial]
    small = [name for name, field in spatial if field <= PATCH_FIELD_SHARE * input_size]
    if small:
        return small[-1]  # of modules sharing one tensor the container comes last (``layer2``, not its ReLU)
    return min(spatial, key=lambda row: row[1])[0] if spatial else None


def route(name: str, endpoint: str) -> tuple[str, dict[str, Any]]:
    """The one rule from a technique to its request: POST to ``endpoint`` with ``params.method`` naming it.

    ``name`` and ``endpoint`` are a technique's ``name`` and ``endpoint`` as the info API describes it
    (``client.http.TechniqueInfo``; ``convlens.registry.Spec.name`` and ``Spec.route``). The method is sent
    even where the endpoint serves one technique: every endpoint accepts its own techniques' names, so the
    request never depends on which technique is the endpoint's default. Returns a fresh dict (callers add to it).
    """
    if not name or not endpoint:
        raise ValueError(f"a technique needs a name and an endpoint, got {name!r} at {endpoint!r}")
    return endpoint, {METHOD_PARAM: name}


class SchemaError(ValueError):
    """A request field is missing or malformed. ``field`` names it (dotted for nested)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


def check_model_name(value: object, field_name: str = "model") -> str:
    """A model name is 1-64 of a-z 0-9 _ - (whether the model exists is the loader's question)."""
    if not isinstance(value, str):
        raise SchemaError(field_name, f"expected a model name (a string), got {type(value).__name__}")
    if not MODEL_NAME.fullmatch(value):
        raise SchemaError(field_name, f"{value!r} is not a model name (1-64 characters of a-z, 0-9, '_', '-')")
    return value


@dataclass(frozen=True)
class TechniqueRequest:
    """A validated request. ``images`` maps an input name (``image``, ``content``, ``style``, ...) to
    its raw encoded bytes (PNG/JPEG/...), not yet decoded; the batch input ``images`` to a list of them."""

    images: Mapping[str, bytes | list[bytes]] = field(default_factory=dict)
    model: str = "builtin"
    target: int | None = None
    layer: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    target_label: str | None = None  # a target given as a class label: resolved to ``target`` once the model is known

    @property
    def image(self) -> bytes | None:
        image = self.images.get("image")
        return image if isinstance(image, bytes) else None


class _Json:
    """``to_json``/``from_json`` of the response dataclasses (plain JSON values only)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Any:
        return cls(**dict(data))


@dataclass(frozen=True)
class TopClass:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class AttributionResponse(_Json):
    """What an endpoint returns: ``images`` maps a name (``map``, ``overlay``, ...) to base64 PNG."""

    images: dict[str, str]
    target: int
    target_label: str
    topk: list[TopClass]
    scalars: dict[str, float]
    elapsed_ms: float
    weights: WeightsKind
    model: str = "builtin"
    layer: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # declared words (the heat map's colour map)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributionResponse:
        kwargs = dict(data)
        kwargs["topk"] = [TopClass(**t) for t in data.get("topk", [])]
        return cls(**kwargs)


@dataclass(frozen=True)
class GridsResponse(_Json):
    """Activations family: ``images`` holds each grid as one mosaic (plus ``input``, ``focus`` and
    ``overlay`` when an image and a channel were given); ``items`` describe the tiles in mosaic order
    (``row``, ``col`` and the technique's statistics); ``scalars`` say how to cut tiles out of a mosaic."""

    technique: str
    images: dict[str, str]
    items: list[dict[str, Any]]
    scalars: dict[str, float]
    elapsed_ms: float
    weights: WeightsKind
    model: str = "builtin"
    layer: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # declared words (the mosaics' colour map)


@dataclass(frozen=True)
class CorpusResponse(_Json):
    """Corpus family: what a model makes of a dataset. ``series`` are named curves ``[xs, ys]`` (for
    charts), ``vectors`` one float vector per image (CNN codes), ``points`` 2-D coordinates, ``items``
    one dict per image or patch, ``columns`` one compact array per per-image value (:mod:`convlens.outputs`)."""

    technique: str
    images: dict[str, str]
    scalars: dict[str, float]
    series: dict[str, list[list[float]]]
    items: list[dict[str, Any]]
    elapsed_ms: float
    weights: WeightsKind
    model: str = "builtin"
    layer: str | None = None
    vectors: list[list[float]] | None = None
    points: list[list[float]] | None = None
    columns: dict[str, str] | None = None  # name → base64 of a little-endian array, one value per image


@dataclass(frozen=True)
class SynthesisResponse(_Json):
    """Synthesis family: ``images`` the result first (``result``), then what it came from (``original``,
    ``change``, ``content``, ``style``, grid cells); ``series`` the loss history per objective term
    (``[steps, values]``); ``labels`` words worth showing (the network that measured, predicted classes);
    ``scalars`` final losses, steps, seconds, ``cancelled`` (1 when stopped early)."""

    technique: str
    images: dict[str, str]
    scalars: dict[str, float]
    series: dict[str, list[list[float]]]
    labels: dict[str, str]
    elapsed_ms: float
    weights: WeightsKind
    model: str = "builtin"
    layer: str | None = None
    target: int | None = None
    target_label: str | None = None


JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def job_id(value: Any, name: str = "job") -> str | None:
    """A client-chosen id of a long job (to cancel it): 1–64 of A–Z a–z 0–9 _ -."""
    value = form_text(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise SchemaError(name, "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
    return value


def _decode_image_field(value: Any, name: str = "image") -> bytes:
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SchemaError(name, "not valid base64") from exc
    else:
        raise SchemaError(name, f"expected base64 string or file upload, got {type(value).__name__}")
    if not data:
        raise SchemaError(name, "is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise SchemaError(name, f"is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES}")
    return data


def form_text(value: Any) -> Any:
    """Multipart fields arrive as bytes; JSON fields as their own types."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


# What a string means where a number is expected (docs/serving.md, "Numbers"): ASCII only, no padding, no
# unicode digits ("²", "١٢"), no NaN or infinity; an integer is 1-40 ASCII digits with an optional minus sign.
INTEGER_TEXT = re.compile(r"-?[0-9]{1,40}", re.ASCII)
NUMBER_TEXT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,4})?", re.ASCII)
MAX_NUMBER_TEXT = 64
INT64 = (-2**63, 2**63 - 1)  # torch's integers are 64-bit: a larger one would fail deep inside a technique


def as_int(name: str, value: Any, low: int | None = INT64[0], high: int | None = INT64[1]) -> int:
    """The one coercion of a request's integer: an int, an integral finite float (JSON has one number type) or a
    string of ASCII ``-?[0-9]+``; anything else, or a value outside [low, high], is a SchemaError naming ``name``."""
    value = form_text(value)
    if isinstance(value, bool):
        raise SchemaError(name, f"expected an integer, got a boolean ({value!r})")
    if isinstance(value, str):
        if not INTEGER_TEXT.fullmatch(value):
            raise SchemaError(name, f"expected an integer (ASCII digits, optional '-'), got {value[:40]!r}")
        value = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise SchemaError(name, f"expected an integer, got {value!r}")
        value = int(value)
    elif not isinstance(value, int):
        raise SchemaError(name, f"expected an integer, got {type(value).__name__}")
    low = INT64[0] if low is None else max(low, INT64[0])
    high = INT64[1] if high is None else min(high, INT64[1])
    if not low <= value <= high:
        raise SchemaError(name, f"must be an integer in [{low}, {high}], got {str(value)[:40]}")
    return value


def as_float(name: str, value: Any) -> float:
    """The one coercion of a request's real number: an int, a finite float or an ASCII decimal string
    (``0.5``, ``-1e-3``); NaN, infinities, booleans and anything else are a SchemaError naming ``name``."""
    value = form_text(value)
    if isinstance(value, bool):
        raise SchemaError(name, f"expected a number, got a boolean ({value!r})")
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT or not NUMBER_TEXT.fullmatch(value):
            raise SchemaError(name, f"expected a number (ASCII decimal), got {value[:40]!r}")
        value = float(value)
    elif isinstance(value, int):
        if abs(value) > 2**1023:
            raise SchemaError(name, f"must be a finite number, got {str(value)[:40]}")
        value = float(value)
    elif not isinstance(value, float):
        raise SchemaError(name, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise SchemaError(name, f"must be a finite number, got {value!r}")
    return value


def _optional_int(name: str, value: Any) -> int | None:
    value = form_text(value)
    if value is None or value == "" or value == "null":
        return None
    return as_int(name, value)


def _optional_str(name: str, value: Any) -> str | None:
    value = form_text(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SchemaError(name, f"expected a string, got {type(value).__name__}")
    return value


def _decode_batch_field(value: Any, name: str = BATCH_INPUT) -> list[bytes]:
    if not isinstance(value, (list, tuple)):
        raise SchemaError(name, f"expected a list of base64 images, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_BATCH_IMAGES:
        raise SchemaError(name, f"must hold 1 to {MAX_BATCH_IMAGES} images, got {len(value)}")
    return [_decode_image_field(item, f"{name}.{i}") for i, item in enumerate(value)]


def parse_request(payload: Mapping[str, Any], inputs: tuple[str, ...] = ("image",),
                  optional: tuple[str, ...] = ()) -> TechniqueRequest:
    """Validate a JSON body or the fields of a multipart form for a technique taking ``inputs``.

    Every named input is required, ``optional`` ones are read when present; a field for an image the
    technique does not take is refused (``image`` where none is taken, ``style_5`` beyond the last style).
    The input ``images`` is a list (a batch in one request).
    ``params`` may be an object or (in a form) a JSON-encoded string.
    """
    if not isinstance(payload, Mapping):
        raise SchemaError("body", "expected a JSON object or multipart form")
    images: dict[str, bytes | list[bytes]] = {}
    for name in (*inputs, *optional):
        if name not in payload or payload[name] is None:
            if name in inputs:
                raise SchemaError(name, "is required")
            continue
        if name not in inputs and payload[name] in ("", b""):
            continue  # an optional image left empty (a form's blank file field)
        images[name] = (_decode_batch_field(payload[name], name) if name == BATCH_INPUT
                        else _decode_image_field(payload[name], name))
    if "image" not in (*inputs, *optional) and payload.get("image") not in (None, "", b""):
        raise SchemaError("image", "this technique takes no image")
    for key in payload:
        base, sep, number = str(key).rpartition("_")
        if sep and number.isdigit() and base in inputs and key not in optional:
            taken = ", ".join((base, *[o for o in optional if o.startswith(base)]))
            raise SchemaError(str(key), f"too many {base} images: this technique takes {taken}")
    model = _optional_str("model", payload.get("model")) or "builtin"
    model = check_model_name(model)
    target, target_label = _target(payload.get("target"))
    layer = _optional_str("layer", payload.get("layer"))
    params = form_text(payload.get("params"))
    if params is None or params == "":
        params = {}
    elif isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise SchemaError("params", "is not valid JSON") from exc
    if not isinstance(params, Mapping):
        raise SchemaError("params", f"expected an object, got {type(params).__name__}")
    return TechniqueRequest(images=images, model=model, target=target, layer=layer, params=dict(params),
                            target_label=target_label)


MAX_LABEL_CHARS = 100


def _target(value: Any) -> tuple[int | None, str | None]:
    """(index, None), (None, label) or (None, None). A label holds a letter and no padding; a string of digits
    is an index only in ASCII (a lookalike is refused rather than guessed)."""
    text = form_text(value)
    if isinstance(text, str) and text not in ("", "null") and not re.fullmatch(r"-?[0-9]+", text):
        if (len(text) <= MAX_LABEL_CHARS and text == text.strip() and text.isprintable()
                and any(c.isalpha() for c in text)):
            return None, text
        raise SchemaError("target", f"expected an integer (ASCII digits), a class label or null, got {text[:120]!r}")
    target = _optional_int("target", value)
    if target is not None and target < 0:
        raise SchemaError("target", f"must be >= 0, got {target}")
    return target, None


def resolve_target(label: str, classes: Sequence[str], model: str) -> int:
    """A class label → its index in ``classes`` (case-insensitive), or a 4xx naming ``target``."""
    folded = label.casefold()
    for i, name in enumerate(classes):
        if name.casefold() == folded:
            return i
    close = [c for c in classes if folded in c.casefold()][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SchemaError("target", f"{label!r} is neither a class index nor a class label of {model}{hint} "
                                "(an index is an integer)")


def choice(name: str, value: Any, allowed: tuple[str, ...], default: str) -> str:
    """Validate an enumerated parameter against its allow-list."""
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise SchemaError(name, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def parse_assignment(item: str) -> tuple[str, Any]:
    """``K=V`` from the command line; V is parsed as JSON when it is (``alpha=0.3``,
    ``blend='{"a": 0.5}'``), else kept as text."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def assign_inputs(paths: Sequence[str], inputs: Sequence[str], optional: Sequence[str], technique: str
                  ) -> dict[str, str]:
    """Command-line image paths → the technique's input names, in declaration order (required first)."""
    if not len(inputs) <= len(paths) <= len(inputs) + len(optional):
        wanted = " ".join([n.upper() for n in inputs] + [f"[{n.upper()}]" for n in optional]) or "no image"
        raise ValueError(f"{technique} takes {wanted}; got {len(paths)} image(s)")
    return dict(zip((*inputs, *optional), paths, strict=False))


def target_from_text(text: str, classes: Sequence[str]) -> int:
    """A command line's target: a class index (ASCII digits) or a class label, case-insensitive."""
    if text.isascii() and text.isdigit():
        return int(text)
    return resolve_target(text, classes, "this model")
