"""The info API (``{"info": "models" | "layers" | "classes" | "techniques", ...}``): the catalogue the dashboard
and the client read, answered on any endpoint without an image (clients ask the one of
:func:`convlens.registry.info_endpoint`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from convlens import models as zoo
from convlens import pipeline, registry
from convlens import zoo as registered
from convlens.schema import SchemaError, check_model_name, form_text
from handlers import known_fields
from handlers.model_cache import check_buildable
from handlers.parsing import WEIGHTS_CHOICES

INFO_KINDS = ("models", "layers", "classes", "techniques")


class Catalogue:
    """Answers info requests; ``get_model`` loads (through the worker's cache) a registered model's card,
    ``cached`` finds an already loaded build. Layer catalogues are computed once per model."""

    def __init__(self, get_model: Callable[[str, str], zoo.LoadedModel],
                 cached: Callable[[str], zoo.LoadedModel | None]) -> None:
        self.get_model = get_model
        self.cached = cached
        self.layers_info: dict[str, dict[str, Any]] = {}

    def info(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        kind = form_text(fields.get("info"))
        known_fields.refuse_unknown(fields, known_fields.INFO_FIELDS)
        if kind not in INFO_KINDS:
            raise SchemaError("info", f"must be one of {', '.join(INFO_KINDS)}; got {kind!r}")
        if kind == "models":
            return {"models": model_rows(),
                    "methods": [s.name for s in registry.of_family("attribution")],
                    "weights_choices": list(WEIGHTS_CHOICES)}
        if kind == "techniques":
            return {"techniques": [s.describe() for s in registry.registry().values()],
                    "families": dict(registry.FAMILY_DESCRIPTIONS), "endpoints": list(registry.all_endpoints())}
        name = check_model_name(form_text(fields.get("model")) or "builtin")
        if name not in zoo.REGISTRY:
            loaded = self.get_model(name, "pretrained")  # a registered model: its card says it all
            if kind == "classes":
                return {"model": name, "classes": list(loaded.classes)}
            return {**self.layers(name, loaded), "classes": list(loaded.classes)}
        spec = zoo.get_spec(name)
        if kind == "classes":
            return {"model": name, "classes": list(spec.classes)}
        return {**self.layers(name), "classes": list(spec.classes)}

    def layers(self, name: str, loaded: zoo.LoadedModel | None = None) -> dict[str, Any]:
        """The layer catalogue does not depend on the weights: computed once from a random-weights build."""
        if loaded is not None or name not in self.layers_info:
            loaded = loaded or self.cached(name) or zoo.load_model(check_buildable(name), weights="random")
            self.layers_info[name] = {
                "model": name,
                "input_size": loaded.preprocessing.input_size,
                "default_cam_layer": loaded.default_cam_layer,
                "first_conv_layer": loaded.first_conv_layer,
                "layers": [{"name": row.name, "type": row.kind, "output_shape": list(row.output_shape),
                            "receptive_field": row.receptive_field, "stride": row.stride,
                            "spatial": row.is_spatial, "conv": pipeline.is_conv(loaded, row.name)}
                           for row in loaded.layers],
            }
        return self.layers_info[name]


def model_rows() -> list[dict[str, Any]]:
    """The info API's model list: the built-in zoo (weights found or not), then every registered model with its
    card, or ``status: unavailable`` and the reason."""
    rows = [builtin_model_row(name) for name in zoo.REGISTRY]
    for entry in registered.list_models():
        if entry.name in zoo.REGISTRY:
            continue
        card = entry.card
        rows.append({"name": entry.name, "description": card.description if card else "", "weights": "registered",
                     "status": entry.status, "reason": entry.reason,
                     "num_classes": len(card.classes) if card else None,
                     "input_size": card.input_size if card else None,
                     "card": card.to_json() if card else None, "fetch_hint": None})
    return rows


def builtin_model_row(name: str) -> dict[str, Any]:
    spec = zoo.get_spec(name)
    found = zoo.find_weights(name)
    kind = "missing" if found is None else ("builtin" if spec.tv_weights is None else "imagenet")
    hint = None
    if found is None:
        hint = ("retrain it with `convlens builtin train`" if spec.tv_weights is None else
                f"fetch it with `convlens weights fetch {name}` (or `make weights`) on a machine with internet")
    card = {**zoo.builtin_card(name), "weights_sha256": None if found is None else registered.sha256_file(found)}
    return {"name": name, "description": spec.description, "weights": kind, "status": "available",
            "num_classes": len(spec.classes), "input_size": spec.preprocessing.input_size,
            "fetch_hint": hint, "card": card}
