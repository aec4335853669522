"""The top-level fields a request may carry; any other is a 400 naming it (a typo such as ``"taget"`` must not
silently run the default).

A technique request takes the images its technique declares (:mod:`convlens.registry`), the fields below and
``params`` (whose keys the technique's params dataclass checks). Everything the product's client, CLI and
dashboard send is here; the multipart form of a request uses the same names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from convlens import registry
from convlens.schema import SchemaError

# model, weights and target/layer choices, the technique's settings, its name as a form field of its own, and the
# id, streaming and background running of a long job
REQUEST_FIELDS = ("model", "weights", "target", "layer", "params", registry.METHOD_PARAM, "job", "stream",
                  "background")
INFO_FIELDS = ("info", "model", "weights")
MAX_NAME_CHARS = 100  # an unknown field is named in the answer, but a 1 MB name is not sent back whole


def refuse_unknown(fields: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """SchemaError naming the first field of ``fields`` outside ``allowed``."""
    known = tuple(allowed)
    for key in fields:
        if key not in known:
            name = str(key) if len(str(key)) <= MAX_NAME_CHARS else f"{str(key)[:MAX_NAME_CHARS]}…"
            raise SchemaError(name, f"unknown field; a request takes {', '.join(sorted(set(known)))} "
                                    "(a technique's settings go in params)")


def request_fields_of(spec_inputs: Iterable[str], extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every top-level field a request for a technique taking the images ``spec_inputs`` may carry."""
    return (*spec_inputs, *REQUEST_FIELDS, *extra)
