"""Your own models through the API: list the models directory, add a model (an architecture by name and an
uploaded state dict), remove one. The same checks as ``convlens model add`` (:func:`convlens.zoo.add`): a refused
model writes nothing, and every refusal names the request's field (``params.weights``, ``params.source``, ...).

Adding and removing change the server: they are allowed only when the operator sets
``$CONVLENS_MODEL_UPLOAD=1`` (``convlens serve start``, i.e. ``make run``, sets it unless the environment says
otherwise; the containers leave it off). ``list`` is always allowed.

Only ``torchvision:NAME`` and ``timm:NAME`` architectures: a ``python:`` source is code, and code is never accepted
over the API (the operator adds such models on the server with ``convlens model add --code``).
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from convlens import zoo
from convlens.models import REGISTRY, LoadedModel
from convlens.outputs import Item, Scalar
from convlens.registry import technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError

MODEL_UPLOAD_ENV = "CONVLENS_MODEL_UPLOAD"
# Decoded weights accepted by this technique. What reaches it is bounded first by the server's request size:
# 16 MiB of JSON through TorchServe and the gate (serve/config.properties, $CONVLENS_GATE_MAX_BODY), i.e. about
# 12 MB of weights once base64 has added its third. Larger models: `convlens model add` on the server.
MAX_MODEL_UPLOAD_BYTES = 300 * 1024**2
API_SOURCES = ("torchvision", "timm")
WEIGHT_SUFFIX = {"safetensors": ".safetensors", "pt": ".pt"}
# A manifest field (what convlens.zoo names) -> the request's parameter.
_PARAM_OF_FIELD = {
    "name": "name", "description": "description", "architecture.source": "source", "architecture.kwargs": "kwargs",
    "weights": "weights", "weights.file": "weights", "weights.key": "key", "weights.strip_prefix": "strip_prefix",
    "classes": "classes", "classes.names": "classes", "classes.file": "classes",
    "preprocessing": "input_size",  # the probe pass failed: "check input_size and channels"
    "layers.cam": "cam_layer", "layers.code": "code_layer",
}


@dataclass(frozen=True)
class ModelFilesParams:
    """``action``: list | add | remove (``name``). ``add`` takes ``source`` (``torchvision:NAME`` or
    ``timm:NAME``), ``weights`` (base64 of a ``.safetensors`` file or a ``.pt``/``.pth`` state dict, as
    ``weights_format`` says), ``classes`` (newline-separated text, or a JSON list of up to 64 names), and the
    manifest's optional fields: ``input_size``, ``resize_size``, ``channels``, ``mean``, ``std`` (required unless
    timm knows them), ``kwargs`` (a JSON object of numbers, booleans and strings, e.g. ``{"num_classes": 3}``),
    ``description``, ``key``, ``strip_prefix`` (comma-separated or a list), ``cam_layer``, ``code_layer``."""

    action: Literal["list", "add", "remove"] = "list"
    name: str = ""
    source: str = ""
    weights: str = ""
    weights_format: Literal["safetensors", "pt"] = "safetensors"
    classes: str | tuple[str, ...] = ""
    input_size: int | None = None
    resize_size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    kwargs: dict[str, int | float | bool | str] | None = None
    description: str = ""
    key: str | None = None
    strip_prefix: str | tuple[str, ...] = ""
    cam_layer: str | None = None
    code_layer: str | None = None


def upload_allowed() -> bool:
    """Does the operator let clients add and remove models (``$CONVLENS_MODEL_UPLOAD`` is ``1`` or ``true``)?"""
    return os.environ.get(MODEL_UPLOAD_ENV, "").strip().lower() in ("1", "true")


def _check_allowed(action: str) -> None:
    if not upload_allowed():
        raise SchemaError("params.action", f"{action} is refused: the operator has turned model upload off on "
                                           f"this server. Set {MODEL_UPLOAD_ENV}=1 in the server's environment to "
                                           "allow it (`make run` does; with docker compose put it in .env), or add "
                                           "the model on the server with `convlens model add`")


def param_field(field_name: str) -> str:
    """The request parameter behind a :class:`convlens.zoo.ManifestError`'s manifest field."""
    if field_name.startswith("architecture.kwargs"):
        return "params.kwargs"
    if field_name.startswith("preprocessing."):
        return "params." + field_name.partition(".")[2]
    mapped = _PARAM_OF_FIELD.get(field_name)
    return f"params.{mapped}" if mapped else "params"


def _as_request_error(exc: zoo.ManifestError) -> SchemaError:
    return SchemaError(param_field(exc.field), exc.message)


def decoded_size(text: str) -> int:
    """The size the base64 ``text`` decodes to (an upper bound when it is not valid base64)."""
    return len(text) * 3 // 4 - min(2, len(text) - len(text.rstrip("=")))


def _source(source: str) -> str:
    kind = source.partition(":")[0]
    if kind == "python":
        raise SchemaError("params.source", "python: sources are code, and code is never accepted over the API; "
                                           "the operator adds such a model on the server with `convlens model add "
                                           "--code FILE`")
    if kind not in API_SOURCES or not source.partition(":")[2]:
        raise SchemaError("params.source", f"must be 'torchvision:NAME' or 'timm:NAME', got {source[:80]!r}")
    return source


def _weights(text: str) -> bytes:
    if not text:
        raise SchemaError("params.weights", "is required: the base64 of a .safetensors file or a .pt/.pth state "
                                            "dict")
    size = decoded_size(text)
    if size > MAX_MODEL_UPLOAD_BYTES:
        raise SchemaError("params.weights", f"decodes to {size:,} bytes, more than the {MAX_MODEL_UPLOAD_BYTES:,} "
                                            "accepted over the API; add larger models on the server with "
                                            "`convlens model add`")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError("params.weights", "must be base64 (of a .safetensors file or a .pt/.pth state dict)"
                          ) from None
    if not data:
        raise SchemaError("params.weights", "is empty")
    return data


def _classes(value: str | tuple[str, ...]) -> list[str]:
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return list(value)


def _prefixes(value: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return tuple(value)


def add(params: ModelFilesParams) -> zoo.ModelCard:
    """Check the request, write the weights to a temporary file, :func:`convlens.zoo.add` (nothing is written to the
    models directory unless the model checks)."""
    _check_allowed("add")
    source = _source(params.source)
    try:
        name = zoo.check_name(params.name)
    except zoo.ManifestError as exc:
        raise _as_request_error(exc) from None
    data = _weights(params.weights)
    with tempfile.TemporaryDirectory(prefix="convlens-upload-") as tmp:
        path = Path(tmp) / f"weights{WEIGHT_SUFFIX[params.weights_format]}"
        path.write_bytes(data)
        del data
        try:
            return zoo.add(name, source, path, _classes(params.classes), input_size=params.input_size,
                           resize_size=params.resize_size, mean=params.mean, std=params.std,
                           channels=params.channels, kwargs=params.kwargs, description=params.description,
                           key=params.key, strip_prefix=_prefixes(params.strip_prefix), cam_layer=params.cam_layer,
                           code_layer=params.code_layer)
        except zoo.ManifestError as exc:
            raise _as_request_error(exc) from None


def remove(name: str) -> None:
    _check_allowed("remove")
    if name in REGISTRY:
        raise SchemaError("params.name", f"{name!r} is a built-in model and cannot be removed")
    try:
        zoo.remove(zoo.check_name(name))
    except zoo.ManifestError as exc:
        raise _as_request_error(exc) from None


def listing() -> Corpus:
    """One row per model of the models directory, shipped ones first (``removable`` false for those)."""
    shipped = zoo.shipped_names()
    rows: list[dict[str, Any]] = [{**entry.to_json(), "removable": entry.name not in shipped}
                                  for entry in zoo.list_models()]
    return Corpus(items=rows, scalars={"models": float(len(rows)), "upload_enabled": float(upload_allowed())})


# ``add`` answers the new model's card as its one item: a field per ModelCard field (``name`` is shared with a row)
_CARD_FIELDS = tuple(Item(f.name, f"the new model's {f.name.replace('_', ' ')}", optional=True)
                     for f in fields(zoo.ModelCard) if f.name not in ("name", "layers"))


@technique(name="model_files", page="models", title="Models", family="corpus", params=ModelFilesParams, inputs=(),
           endpoint="dataset", order=6, reference="convlens.zoo: a model.toml manifest per model folder", outputs=(
               Scalar("upload_enabled", "1 when models may be added and removed here", integer=True),
               Scalar("models", "models in the models directory (list, remove)", optional=True, integer=True),
               Scalar("parameters", "the new model's parameter count (add)", optional=True, integer=True),
               Item("name", "the model's name"),
               # list and remove: one row per model of the models directory
               Item("status", "whether the model loads", optional=True),
               Item("reason", "why it does not, if it does not", optional=True),
               Item("card", "what the model is (architecture, classes, input, weights)", optional=True),
               Item("removable", "false for the models shipped with the server", optional=True),
               *_CARD_FIELDS))
def model_files(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: ModelFilesParams = ModelFilesParams(),
                progress: Progress | None = None) -> Corpus:
    """items: ``list`` and ``remove``: one row per model of the models directory (name, status, reason, card,
    removable);
    ``add``: the new model's card. scalars: ``models`` (how many), ``upload_enabled`` (1 when add and remove are
    allowed)."""
    if params.action == "add":
        card = add(params)
        return Corpus(items=[card.to_json()], scalars={"parameters": float(card.parameters),
                                                       "upload_enabled": 1.0})
    if params.action == "remove":
        remove(params.name)
    return listing()
