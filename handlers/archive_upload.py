"""A zip for ``/predictions/dataset`` (``action: import``), however a client sends it.

The technique reads one thing, ``params.archive`` (a base64 zip). A multipart file part named ``archive``
(``-F archive=@pets.zip``), or any one file part holding a zip, gets the same import, with ``params`` as a JSON
field or ``action`` and ``name`` as fields of their own; without ``action`` it means ``import``.

The zip as the whole body (``Content-Type: application/zip`` or ``application/octet-stream``) is recognised
but cannot be imported: it has no name, and TorchServe 0.12 does not hand the query string to the handler
(``?name=pets`` never arrives). It is a 400 naming ``params.name`` that says what to send instead.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from convlens import registry
from convlens.schema import SchemaError, form_text

ARCHIVE = "archive"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty zip
ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip", "application/octet-stream")
LIFTED = ("action", "name")  # params a form field or the query string may give next to an uploaded zip
IMPORT = "import"
HOW = ("send it as a multipart form (curl -F archive=@pets.zip -F name=pets) or as base64 in params.archive "
       "with params.name")
RAW_BODY = ("a zip sent as the whole request body has no dataset name (TorchServe does not pass the query string "
            "on to the handler): " + HOW)


def archive_techniques(endpoint: str | None = None) -> tuple[str, ...]:
    """The techniques (of ``endpoint``, or all) that have an ``archive`` parameter."""
    specs = registry.endpoints().get(endpoint, []) if endpoint is not None else registry.registry().values()
    return tuple(spec.name for spec in specs if ARCHIVE in {f.name for f in dataclasses.fields(spec.params)})


def takes_archive(endpoint: str) -> bool:
    """Whether a technique of ``endpoint`` has an ``archive`` parameter."""
    return bool(archive_techniques(endpoint))


def _is_bytes(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray))


def _params(fields: Mapping[str, Any]) -> dict[str, Any]:
    params = form_text(fields.get("params"))
    if params is None or params == "":
        return {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError:
            raise SchemaError("params", "is not valid JSON") from None
    if not isinstance(params, Mapping):
        raise SchemaError("params", f"expected an object, got {type(params).__name__}")
    return dict(params)


def _zip_parts(fields: Mapping[str, Any], content_type: str, importing: bool) -> list[str]:
    """The fields that carry an uploaded zip: ``archive`` as a file, any part starting like a zip, and the raw
    body (``image``, as :func:`handlers.parsing.request_fields` names it) when declared a zip or for an import."""
    parts = []
    for key, value in fields.items():
        if key == "params" or not _is_bytes(value):
            continue
        if key == ARCHIVE or bytes(value[:4]) in ZIP_MAGIC or (
                key == "image" and (content_type in ZIP_TYPES or importing)):
            parts.append(str(key))
    return parts


def _lift(fields: Mapping[str, Any], params: dict[str, Any]) -> None:
    """``action`` and ``name`` given as form fields or query parameters join ``params`` (both: they must agree)."""
    for key in LIFTED:
        if key not in fields:
            continue
        value = form_text(fields[key])
        if key in params and params[key] != value:
            raise SchemaError(f"params.{key}", f"given twice with different values ({params[key]!r} in params, "
                                               f"{value!r} as a field)")
        params[key] = value


def with_uploaded_archive(fields: Mapping[str, Any], content_type: str = "") -> dict[str, Any]:
    """``fields`` with an uploaded zip moved into ``params.archive`` (base64) and ``action``/``name`` fields into
    ``params``; unchanged when no zip was uploaded."""
    params = _params(fields)
    importing = params.get("action", form_text(fields.get("action"))) == IMPORT
    parts = _zip_parts(fields, content_type, importing)
    if not parts:
        if importing and not params.get(ARCHIVE):
            raise SchemaError("params.archive", f"is missing or empty: {HOW}")
        return dict(fields)
    if len(parts) > 1:
        raise SchemaError(parts[1], f"a second file next to {parts[0]!r}: send one zip per import")
    [part] = parts
    method = params.get(registry.METHOD_PARAM, form_text(fields.get(registry.METHOD_PARAM)))
    _lift(fields, params)
    action = params.setdefault("action", IMPORT)
    if action != IMPORT or method not in (None, "", *archive_techniques()):
        raise SchemaError(part, f"a zip is taken only by action=import (got action {action!r}, method {method!r})")
    if params.get(ARCHIVE):
        raise SchemaError("params.archive", f"sent twice: in params and as the file {part!r}")
    if not params.get("name"):
        raw = part == "image" and content_type in ZIP_TYPES
        raise SchemaError("params.name", RAW_BODY if raw else f"is required to import a zip: {HOW}")
    params[ARCHIVE] = base64.b64encode(bytes(fields[part])).decode("ascii")
    rest = {k: v for k, v in fields.items() if k not in (part, "params", *LIFTED)}
    return {**rest, "params": params}
