"""Reading a request the way TorchServe delivers it: its fields, its technique, its weights choice, its flags.

A JSON body arrives as a dict, a multipart form as one key per field, a raw body as bytes (a JSON object or the
image itself). What is read here is checked with :func:`convlens.schema.parse_request` by the handler.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from convlens import registry
from convlens.schema import SchemaError, TechniqueRequest, form_text
from handlers import form_fields
from handlers.errors import RequestError

WEIGHTS_CHOICES = ("pretrained", "random")
JSON_CONTENT_TYPE = "application/json"


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


def with_target(request: TechniqueRequest, index: int) -> TechniqueRequest:
    """``request`` with its target label resolved to the class ``index``."""
    return dataclasses.replace(request, target=index, target_label=None)


def is_true(value: Any) -> bool:
    """A request's boolean flag (``stream``, ``background``) as JSON or as a form field."""
    return value in (True, "true", b"true", "1", b"1")


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
    if content_type == JSON_CONTENT_TYPE and isinstance(row.get("body"), (bytes, bytearray)):
        try:
            decoded = json.loads(bytes(row["body"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SchemaError("body", "is declared application/json but is not valid UTF-8 JSON") from None
        row = {**row, "body": decoded}
    key = "body" if "body" in row else "data" if "data" in row else None
    if key is None:
        return dict(row)
    rest = {k: v for k, v in row.items() if k != key}
    return {**rest, **_body_fields(row[key])}


def _body_fields(body: Any) -> dict[str, Any]:
    """The fields of a request's body: a JSON object (decoded or not yet), or a raw image upload."""
    if isinstance(body, Mapping):
        return dict(body)
    if isinstance(body, (bytes, bytearray)):
        if not bytes(body[:64]).lstrip().startswith(b"{"):
            return {"image": body}  # a raw image upload
        try:
            decoded = json.loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError("body", f"is not valid JSON: {exc}") from None
        if not isinstance(decoded, Mapping):
            raise SchemaError("body", "expected a JSON object")
        return dict(decoded)
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except json.JSONDecodeError:
            raise SchemaError("body", "expected a JSON object, got a string") from None
        if isinstance(decoded, Mapping):
            return dict(decoded)
    raise SchemaError("body", f"expected a JSON object, got {type(body).__name__}")


def declared_type(context: Any, idx: int) -> str:
    """Request ``idx``'s Content-Type (lower case, no parameters), "" when unknown."""
    try:
        headers = context.get_all_request_header(idx) if context is not None else None
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() == "content-type" and isinstance(value, str):
            return value.split(";")[0].strip().lower()
    return ""


def weights_choice(value: Any) -> str:
    value = form_text(value)
    if value is None or value == "":
        return "pretrained"
    if value not in WEIGHTS_CHOICES:
        raise SchemaError("weights", f"must be one of {', '.join(WEIGHTS_CHOICES)}; got {value!r}")
    return str(value)


def choose_technique(endpoint: str, fields: Mapping[str, Any]) -> registry.Spec:
    """The technique of ``endpoint`` the request asks for (``params.method`` or a form field of its own), else
    the endpoint's default."""
    specs = registry.endpoints().get(endpoint)
    if not specs:
        raise RequestError(404, f"endpoint {endpoint!r} serves no technique", None)
    method = _method(fields)
    if method is None or method == "":
        return registry.default_technique(endpoint)
    names = tuple(s.name for s in specs)
    if method not in names:
        raise SchemaError(f"params.{registry.METHOD_PARAM}", f"must be one of {', '.join(names)}; got {method!r}")
    return next(s for s in specs if s.name == method)


def _method(fields: Mapping[str, Any]) -> Any:
    params = fields.get("params")
    method = params.get(registry.METHOD_PARAM) if isinstance(params, Mapping) else None
    if method is None and isinstance(form_text(params), str) and f'"{registry.METHOD_PARAM}"' in form_text(params):
        try:
            decoded = json.loads(form_text(params))
        except json.JSONDecodeError:
            decoded = None
        method = decoded.get(registry.METHOD_PARAM) if isinstance(decoded, Mapping) else None
    if method is None:
        method = form_text(fields.get(registry.METHOD_PARAM))
    return method
