"""Each request's answer: a result encoded as its family's response body, then written the way TorchServe sends
it (JSON bytes, status and headers set per request through the context, ``set_response_status(code, phrase,
idx=i)``), so one batch answers each request on its own."""

from __future__ import annotations

import base64
import dataclasses
import http
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from convlens.images import encode_png
from convlens.render import Output
from handlers.errors import Outcome, internal_error
from handlers.parsing import JSON_CONTENT_TYPE

logger = logging.getLogger(__name__)


def has_requests(context: Any) -> bool:
    """Whether ``context`` answers real requests (None while warming up; tests build one with processors)."""
    return context is not None and getattr(context, "request_processor", None) is not None


def set_headers(context: Any, idx: int, headers: Mapping[str, str]) -> None:
    if headers and has_requests(context):
        for name, value in headers.items():
            context.set_response_header(idx, name, value)


def set_status(context: Any, idx: int, status: int) -> None:
    """Response ``idx`` is JSON with ``status``."""
    if not has_requests(context):
        return
    try:
        context.set_response_content_type(idx, JSON_CONTENT_TYPE)
        if status != 200:
            context.set_response_status(status, http.HTTPStatus(status).phrase, idx=idx)
    except (IndexError, KeyError, TypeError):
        logger.warning("no request processor for response %d", idx)


def write(context: Any, idx: int, outcome: Outcome | None) -> bytes:
    """Response ``idx``: its status and headers set, its body as JSON bytes (a 500 if it has no outcome)."""
    if outcome is None:  # cannot happen; still one answer per request
        logger.error("request %d got no outcome", idx)
        outcome = internal_error()
    set_status(context, idx, outcome.status)
    set_headers(context, idx, outcome.headers)
    return json.dumps(outcome.body).encode("utf-8")


def write_all(context: Any, outcomes: Sequence[Outcome | None]) -> list[bytes]:
    """One JSON response per request, in order."""
    return [write(context, i, outcome) for i, outcome in enumerate(outcomes)]


def encode_b64_png(image: Tensor) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def body(output: Output, response_type: type[Any]) -> dict[str, Any]:
    """``output`` as JSON (images as base64 PNG), keeping the fields the family's response dataclass
    (:mod:`convlens.schema`) declares; ``elapsed_ms`` is 0 until the handler fills it in."""
    values = {**output.to_json(encode_b64_png), "elapsed_ms": 0.0}
    return {f.name: values[f.name] for f in dataclasses.fields(response_type)}
