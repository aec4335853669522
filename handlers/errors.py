"""The error model: a request answered with a status and a JSON ``{"error": ..., "field": ...}`` body.

Every bad request gets its own 4xx naming the field at fault (one bad request never fails its batch); an
unexpected failure is a 500 with a short message, its traceback in the worker log, never in a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convlens.corpus.ray_codes import RETRY_AFTER_S, ClusterUnavailable
from convlens.results import Cancelled
from convlens.schema import SchemaError

MAX_ERROR_CHARS = 500  # messages quote the client's values: a 10 kB layer name is not sent back whole
INTERNAL_ERROR = "internal error; see the server log"


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
        return {"error": bounded(self.message), "field": self.field}


@dataclass
class Outcome:
    """One request's answer: its status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def bounded(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else f"{message[:MAX_ERROR_CHARS]}… (truncated)"


def error(exc: RequestError | SchemaError) -> Outcome:
    """The 4xx answer of a refused request."""
    if isinstance(exc, SchemaError):
        exc = RequestError.from_schema(exc)
    return Outcome(exc.status, exc.to_json(), exc.headers)


def internal_error(message: str = INTERNAL_ERROR) -> Outcome:
    return Outcome(500, {"error": message, "field": None})


def expected_failure(exc: BaseException) -> Outcome | None:
    """The answer of a failure a request can cause (bad input, a cancelled job) or meet (an unusable Ray
    cluster: 503 naming it, with Retry-After), or None for a bug (a 500 the caller logs)."""
    if isinstance(exc, (SchemaError, RequestError)):
        return error(exc)
    if isinstance(exc, Cancelled):  # a job stopped with nothing to show (its runner says why)
        return error(RequestError(409, "cancelled", "cancel"))
    if isinstance(exc, ClusterUnavailable):  # the Ray cluster codes run on (not this request) is at fault: retry
        return error(RequestError(503, str(exc), None, {"Retry-After": str(RETRY_AFTER_S)}))
    return None
