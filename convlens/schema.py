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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

MODEL_NAMES: tuple[str, ...] = (
    "builtin",
    "alexnet",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "resnet101",
    "densenet121",
    "squeezenet1_1",
    "googlenet",
)
ATTRIBUTION_METHODS: tuple[str, ...] = ("vanilla", "guided", "gradcam")
WeightsKind = Literal["imagenet", "builtin", "random"]

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # encoded image size accepted on the wire
MAX_IMAGE_PIXELS = 25_000_000  # decoded width * height; larger is treated as a decompression bomb
MAX_TOP_K = 20


class SchemaError(ValueError):
    """A request field is missing or malformed. ``field`` names it (dotted for nested)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class AttributionRequest:
    """A validated request. ``image`` is the raw encoded bytes (PNG/JPEG/...), not yet decoded."""

    image: bytes
    model: str = "builtin"
    target: int | None = None
    layer: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopClass:
    index: int
    label: str
    probability: float


@dataclass(frozen=True)
class AttributionResponse:
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributionResponse:
        kwargs = dict(data)
        kwargs["topk"] = [TopClass(**t) for t in data.get("topk", [])]
        return cls(**kwargs)


def _decode_image_field(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SchemaError("image", "not valid base64") from exc
    else:
        raise SchemaError("image", f"expected base64 string or file upload, got {type(value).__name__}")
    if not data:
        raise SchemaError("image", "is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise SchemaError("image", f"is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES}")
    return data


def form_text(value: Any) -> Any:
    """Multipart fields arrive as bytes; JSON fields as their own types."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _optional_int(name: str, value: Any) -> int | None:
    value = form_text(value)
    if value is None or value == "" or value == "null":
        return None
    if isinstance(value, bool):
        raise SchemaError(name, "expected an integer or null, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError as exc:
            raise SchemaError(name, f"expected an integer or null, got {value!r}") from exc
    raise SchemaError(name, f"expected an integer or null, got {type(value).__name__}")


def _optional_str(name: str, value: Any) -> str | None:
    value = form_text(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SchemaError(name, f"expected a string, got {type(value).__name__}")
    return value


def parse_attribution_request(payload: Mapping[str, Any]) -> AttributionRequest:
    """Validate a JSON body or the fields of a multipart form.

    ``params`` may be an object or (in a form) a JSON-encoded string.
    """
    if not isinstance(payload, Mapping):
        raise SchemaError("body", "expected a JSON object or multipart form")
    if "image" not in payload or payload["image"] is None:
        raise SchemaError("image", "is required")
    image = _decode_image_field(payload["image"])
    model = _optional_str("model", payload.get("model")) or "builtin"
    if model not in MODEL_NAMES:
        raise SchemaError("model", f"unknown model {model!r}; known: {', '.join(MODEL_NAMES)}")
    target = _optional_int("target", payload.get("target"))
    if target is not None and target < 0:
        raise SchemaError("target", f"must be >= 0, got {target}")
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
    return AttributionRequest(image=image, model=model, target=target, layer=layer, params=dict(params))


def choice(name: str, value: Any, allowed: tuple[str, ...], default: str) -> str:
    """Validate an enumerated parameter against its allow-list."""
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise SchemaError(name, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value
