"""One declaration per technique: the single source of every list of techniques and endpoints.

A technique module declares itself with :func:`technique`::

    @technique(name="occlusion", title="Occlusion", family="attribution", params=OcclusionParams,
               reference="Zeiler & Fergus 2014")
    def occlusion(model, x, target=None, params=OcclusionParams(), progress=None) -> Attribution: ...

Modules under ``convlens/techniques/`` are discovered on first use, so adding a technique is
one file. The pipeline, the handlers, the archives, the info API, the CLI and (through the
info API) the dashboard all read :func:`registry`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from convlens import schema
from convlens.outputs import Declared, Image, Item, Label, Outputs, Scalar
from convlens.schema import MAX_TOP_K

Family = Literal["prediction", "attribution", "activations", "synthesis", "corpus"]
FAMILIES: tuple[Family, ...] = ("prediction", "attribution", "activations", "synthesis", "corpus")
FAMILY_DESCRIPTIONS: dict[Family, str] = {
    "prediction": "image → the model's classes",
    "attribution": "image → heat map over the input",
    "activations": "image or nothing → named grids of images",
    "synthesis": "zero, one or two images → image(s), iterative with progress",
    "corpus": "a dataset → vectors, points or patches",
}
# Does the input look like the model's training data (convlens.familiarity)? Every answer that reports a prediction
# carries it; absent when the model has no held-out set to be calibrated on (ImageNet networks, random weights).
FAMILIARITY: tuple[Declared, ...] = (
    Scalar("familiarity", "how typical of the model's training data the input is: the share of its held-out images "
                          "no closer to the training images (0: less alike than every one)", optional=True),
    Scalar("familiarity_threshold", "the familiarity 95 % of the model's held-out images reach", optional=True),
    Scalar("familiar", "Does the input look like the model's training data? Familiarity {familiarity:.3f}; 95 % of "
                       "its held-out images reach {familiarity_threshold:.3f}", optional=True, role="verdict",
           integer=True))
# How a heat map's colours read (convlens.render.heat_scale): its colour map and the values its two ends stand for,
# and the raw map's own range; the dashboard draws a colour bar from them beside the map.
HEAT_SCALE: tuple[Declared, ...] = (
    Label("colormap", "colour map of the heat map"),
    Scalar("map_low", "the value the colour map's first colour stands for"),
    Scalar("map_high", "the value the colour map's last colour stands for (the map was divided by it)"),
    Scalar("map_min", "smallest value of the raw map, before scaling"),
    Scalar("map_max", "largest value of the raw map, before scaling"),
    Scalar("map_normalised", "1 when the map was scaled to its colour range for display", integer=True),
    Scalar("{signed}_abs_max", "largest |value| of the signed map {signed}: full blue stands for minus it, full red "
                               "for it (white: 0)"))
# What every technique of a family answers besides its own declared outputs (the family's runner draws these).
FAMILY_OUTPUTS: dict[Family, Outputs] = {
    "prediction": Outputs(FAMILIARITY),
    "attribution": Outputs((
        Image("input", "what the model saw"), Image("map", "attribution map", kind="map"),
        Image("overlay", "map over the input", kind="map", role="primary"), Scalar("score", "the value explained"),
        *HEAT_SCALE,
        *FAMILIARITY)),
    "activations": Outputs((
        Image("input", "what the model saw", optional=True),
        Image("focus", "the chosen channel", kind="map", optional=True),
        Image("overlay", "the chosen channel over the input", kind="map", optional=True),
        Label("colormap", "colour map of the mosaics' one-channel tiles and of the chosen channel", optional=True),
        Scalar("grid_pad", "pixels between tiles", "px", integer=True),
        Scalar("{grid}_tile_height", "tile height in the {grid} mosaic", "px", integer=True),
        Scalar("{grid}_tile_width", "tile width in the {grid} mosaic", "px", integer=True),
        Scalar("{grid}_columns", "tiles per row of the {grid} mosaic", integer=True),
        Item("grid", "the mosaic the tile is in"), Item("row", "the tile's row"), Item("col", "the tile's column"))),
    "synthesis": Outputs((
        Scalar("seconds", "time spent", "s"),
        Scalar("cancelled", "1 when stopped early", optional=True, integer=True))),
    "corpus": Outputs(),
}
# What a technique needs of ``layer``:
#   none      takes no layer;             optional  any layer may be given (e.g. guided's neuron objective);
#   spatial   a layer with (C, h, w) output;  conv  a module with a 4-D convolution weight.
LayerNeed = Literal["none", "optional", "spatial", "conv"]
# How the layer is chosen when the request names none (resolved by ``convlens.models.LoadedModel``).
# "patch": the deepest spatial layer whose receptive field is at most half the input (convlens.schema.patch_layer)
DefaultLayer = Literal["none", "last_spatial", "middle_spatial", "first_conv", "code", "patch"]

# The family whose technique's endpoint also answers the info API (``{"info": ...}``, see :func:`info_endpoint`).
INFO_FAMILY: Family = "prediction"
# An endpoint that serves several techniques picks one with ``params.<METHOD_PARAM>`` (declared in convlens.schema,
# which the client shares; ``schema.route`` is the rule from a technique to its request).
METHOD_PARAM = schema.METHOD_PARAM
# The input name that holds a list of images (one request, many images: ``/predictions/codes``).
BATCH_INPUT = schema.BATCH_INPUT

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Spec:
    """Everything the product needs to know about a technique, besides its code."""

    name: str
    title: str
    family: Family
    params: type  # a frozen dataclass; its defaults are the demo settings
    run: Callable[..., Any]
    inputs: tuple[str, ...] = ("image",)  # named images it takes; () for none
    optional_inputs: tuple[str, ...] = ()  # named images it may take (e.g. an uploaded query image)
    layer: LayerNeed = "none"
    default_layer: DefaultLayer = "none"
    endpoint: str = ""  # the API endpoint; "" means the technique's own name
    endpoint_default: bool = False  # the technique an endpoint runs when ``params.method`` is absent
    order: int = 100  # display order within a family
    reference: str = ""
    # synthesis: ``run`` takes every request's inputs and targets at once and returns one result per request
    # (fast feed-forward techniques that gain from TorchServe's batching); otherwise one request per call
    batched: bool = False
    outputs: tuple[Declared, ...] = ()  # its own outputs; the family's (FAMILY_OUTPUTS) come first
    # the dashboard page (a module of dashboard/app_pages/) that shows it in a layout of its own; "" for its
    # family's generic page
    page: str = ""

    @functools.cached_property
    def declared(self) -> Outputs:
        """Every output a result of this technique may hold: the family's, then its own (merged once: every
        answer is checked against it)."""
        return FAMILY_OUTPUTS[self.family] + self.outputs

    @property
    def route(self) -> str:
        return self.endpoint or self.name

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (the info API sends it to the dashboard)."""
        return {
            "name": self.name, "title": self.title, "family": self.family, "endpoint": self.route,
            "inputs": list(self.inputs), "optional_inputs": list(self.optional_inputs), "layer": self.layer,
            "default_layer": self.default_layer,
            "reference": self.reference, "params": describe_params(self.params), "batched": self.batched,
            "outputs": self.declared.to_json(), "response_schema": self.declared.json_schema(),
            "page": self.page,
        }


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A params field with an allowed range, checked when a request is parsed (4xx naming the field)
    and shown by the dashboard as the slider's bounds."""
    return dataclasses.field(default=default, metadata={"min": low, "max": high})


MAX_SEED = 2**32 - 1  # NumPy, scikit-learn and UMAP take no larger seed; torch's generators take it too


def seed_field(default: int = 0) -> Any:
    """A ``seed`` params field: any integer in [0, 2³² − 1]."""
    return bounded(default, 0, MAX_SEED)


def topk_field(default: int = 5) -> Any:
    """A ``topk`` params field (how many classes an answer lists): an integer in [1, ``MAX_TOP_K``]."""
    return bounded(default, 1, MAX_TOP_K)


def describe_params(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and (for literals) choices of each field of a params dataclass."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in (typing.get_args(hint) if union else (hint,)) if a is not type(None)]
        choices = [c for a in args if typing.get_origin(a) is Literal for c in typing.get_args(a)]
        kinds = [getattr(a, "__name__", str(a)) for a in args if typing.get_origin(a) is not Literal]
        default = f.default if f.default is not dataclasses.MISSING else None
        rows.append({"name": f.name, "types": kinds + (["choice"] if choices else []), "default": default,
                     "choices": choices, "optional": union and type(None) in typing.get_args(hint),
                     "min": f.metadata.get("min"), "max": f.metadata.get("max")})
    return rows


_REGISTRY: dict[str, Spec] = {}
_DISCOVERED = False


def technique(**declaration: Any) -> Callable[[F], F]:
    """Register the decorated function as a technique; ``declaration`` holds the :class:`Spec` fields."""

    def register(fn: F) -> F:
        spec = Spec(run=fn, **declaration)
        if spec.family not in FAMILIES:
            raise ValueError(f"{spec.name}: unknown family {spec.family!r}")
        spec.declared.check_captions(spec.name)
        if not dataclasses.is_dataclass(spec.params) or not spec.params.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{spec.name}: params must be a frozen dataclass")
        clash = _REGISTRY.get(spec.name)
        if clash is not None and clash.run is not fn:
            raise ValueError(f"technique {spec.name!r} is declared twice")
        _REGISTRY[spec.name] = spec
        return fn

    return register


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module("convlens.techniques")
    for info in sorted(pkgutil.walk_packages(package.__path__, "convlens.techniques."), key=lambda i: i.name):
        importlib.import_module(info.name)
    _DISCOVERED = True


def registry() -> Mapping[str, Spec]:
    """Every technique, ordered by family and display order."""
    _discover()
    ordered = sorted(_REGISTRY.values(), key=lambda s: (FAMILIES.index(s.family), s.order, s.name))
    return {s.name: s for s in ordered}


def get(name: str) -> Spec:
    specs = registry()
    if name not in specs:
        raise KeyError(f"unknown technique {name!r}; known: {', '.join(specs)}")
    return specs[name]


def of_family(family: Family) -> list[Spec]:
    return [s for s in registry().values() if s.family == family]


def endpoints() -> dict[str, list[Spec]]:
    """Endpoint → the techniques it serves (several: chosen with ``params.method``)."""
    out: dict[str, list[Spec]] = {}
    for spec in registry().values():
        out.setdefault(spec.route, []).append(spec)
    return out


def endpoint_family(endpoint: str) -> Family:
    specs = endpoints().get(endpoint)
    if not specs:
        raise KeyError(f"unknown endpoint {endpoint!r}; known: {', '.join(all_endpoints())}")
    return specs[0].family


def all_endpoints() -> tuple[str, ...]:
    """Every endpoint the server offers (what the archives are built for), the info API's first."""
    return tuple(endpoints())


def info_endpoint() -> str:
    """The endpoint clients ask the info API on: the one of the :data:`INFO_FAMILY` technique (any endpoint
    answers it; this one is quick and always served)."""
    return of_family(INFO_FAMILY)[0].route


def default_technique(endpoint: str) -> Spec:
    specs = endpoints()[endpoint]
    return next((s for s in specs if s.endpoint_default), specs[0])
