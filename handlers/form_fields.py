"""Keep track of form fields a request sent more than once.

TorchServe's Java frontend forwards every part of a multipart form to the worker, but the
worker's ``Service.retrieve_data_for_inference`` folds them into one dict per request, so
two ``image`` parts silently become the last one. This module wraps that function (once per
worker process, from the handler's ``initialize``) so each request row is a :class:`FormRow`:
the same dict, plus the names that arrived more than once, which the handler refuses as a 400
naming the field.

Written against TorchServe 0.12 (pinned); if the function is missing the wrap is skipped
and :func:`duplicated_fields` reports nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)


class FormRow(dict[str, Any]):
    """A request's fields as TorchServe delivers them, with the names sent more than once."""

    duplicates: tuple[str, ...] = ()


def duplicated_fields(row: Any) -> tuple[str, ...]:
    """Names of the parts that appeared more than once in the request ``row`` (in order)."""
    return tuple(getattr(row, "duplicates", ()))


def _names_sent_twice(parameters: Sequence[Any]) -> tuple[str, ...]:
    counts = Counter(str(p.get("name", "")) for p in parameters if isinstance(p, dict))
    return tuple(name for name, n in counts.items() if n > 1)


def with_duplicates(retrieve: Callable[[Any], tuple[Any, list[Any], Any]]) -> Callable[[Any], Any]:
    """``retrieve`` (TorchServe's batch decoder) returning :class:`FormRow` rows."""

    def retrieve_keeping_duplicates(batch: Any) -> tuple[Any, list[Any], Any]:
        headers, rows, ids = retrieve(batch)
        for i, (request, row) in enumerate(zip(batch or (), rows, strict=False)):
            if isinstance(row, dict):
                marked = FormRow(row)
                marked.duplicates = _names_sent_twice(request.get("parameters") or ())
                rows[i] = marked
        return headers, rows, ids

    retrieve_keeping_duplicates.wrapped = retrieve  # type: ignore[attr-defined]
    return retrieve_keeping_duplicates


def install() -> bool:
    """Wrap TorchServe's decoder in this process (idempotent); False if there is none to wrap."""
    try:
        from ts.service import Service
    except ImportError:
        return False
    current = Service.__dict__.get("retrieve_data_for_inference")
    function = getattr(current, "__func__", None)
    if function is None:
        logger.warning("TorchServe has no Service.retrieve_data_for_inference; duplicate form fields go unchecked")
        return False
    if getattr(function, "wrapped", None) is None:
        Service.retrieve_data_for_inference = staticmethod(with_duplicates(function))
    return True
