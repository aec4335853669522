"""The pipeline the server and the CLI call: decoded images → technique → named images and values.

It validates the user-facing parameters (allow-lists, types, ranges, layers) against the
technique's declaration and raises :class:`convlens.schema.SchemaError` naming the field, so a bad
request becomes a 4xx, never a traceback. What differs between families (batching, targets,
rendering) lives in one runner per family; nothing here knows a technique by name.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from convlens import familiarity, images, registry, render
from convlens.hooks import UnknownLayerError, UnsupportedArchitectureError
from convlens.models import LoadedModel
from convlens.receptive_field import LayerInfo
from convlens.registry import Spec
from convlens.render import Output
from convlens.results import Progress
from convlens.schema import MAX_SYNTHESIS_INPUT_SIDE, SchemaError, as_float, as_int

Inputs = Mapping[str, Any]  # one request's named images ("image", "content", ...): a PIL image, or a list


@dataclass(frozen=True)
class DisplayOptions:
    """How results are drawn (not what is computed): parsed from ``params`` next to the technique's own, with
    the same checks (:func:`parse_params`)."""

    alpha: float = registry.bounded(0.5, 0, 1)
    colormap: str | None = None  # None: the family's choice (inferno for heat maps)
    topk: int = registry.topk_field()

    @classmethod
    def parse(cls, values: Mapping[str, Any], names: tuple[str, ...]) -> DisplayOptions:
        """The options among ``names`` (those the family draws with) found in ``values``; defaults otherwise."""
        options: DisplayOptions = parse_params(cls, {k: values[k] for k in names if k in values})
        if options.colormap is not None and options.colormap not in images.COLORMAPS:
            raise SchemaError("params.colormap", f"must be one of {', '.join(images.COLORMAPS)}, "
                                                 f"got {options.colormap!r}")
        return options


def parse_params(cls: type, values: Mapping[str, Any], display: tuple[str, ...] = (),
                 prefix: str = "params") -> Any:
    """Build the frozen ``cls`` from user values, checking names, types and literals."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in display or key == registry.METHOD_PARAM:
            continue
        if key not in names:
            allowed = ", ".join(sorted(names | set(display))) or "none"
            raise SchemaError(f"{prefix}.{key}", f"unknown parameter; allowed: {allowed}")
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
        _check_range(f"{prefix}.{key}", kwargs[key], next(f for f in dataclasses.fields(cls) if f.name == key))
    return cls(**kwargs)


def _check_range(name: str, value: Any, f: dataclasses.Field[Any]) -> None:
    """Bounds declared with :func:`convlens.registry.bounded`."""
    low, high = f.metadata.get("min"), f.metadata.get("max")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if (low is not None and v < low) or (high is not None and v > high):
            raise SchemaError(name, f"must be in [{low}, {high}], got {value!r}")


def _options(hint: Any) -> list[Any]:
    """The alternatives of a type hint: a union's members, or the hint itself (a Literal is one option)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the first alternative of ``hint`` that takes it; numbers through ``schema.as_int`` and
    ``schema.as_float`` (the one place a request's numbers are read)."""
    options = _options(hint)
    if value is None and type(None) in options:
        return None
    options = [a for a in options if a is not type(None)]
    numeric_error: SchemaError | None = None
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            if _is_choice(value, typing.get_args(option)):
                return value
            continue
        if option is bool and isinstance(value, bool):
            return value
        if option in (int, float) and _looks_numeric(value):
            try:
                return as_int(name, value) if option is int else as_float(name, value)
            except SchemaError as exc:
                numeric_error = numeric_error or exc
            continue
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is tuple:
            return _coerce_tuple(name, value, option)
        if typing.get_origin(option) is dict:
            return _coerce_mapping(name, value, option)
    if numeric_error is not None and len(options) == 1:
        raise numeric_error
    raise SchemaError(name, f"expected {_describe(hint)}, got {_shown(value)}")


def _looks_numeric(value: Any) -> bool:
    """A value a number alternative should judge (its error is then the precise one): a number or a string."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _is_choice(value: Any, choices: tuple[Any, ...]) -> bool:
    """Exact membership: same type and value (``1 == True`` and ``1.0 == 1`` must not pick a choice)."""
    return any(type(value) is type(c) and value == c for c in choices)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}…"


def _coerce_tuple(name: str, value: Any, hint: Any) -> tuple[Any, ...]:
    """``tuple[float, ...]`` from a JSON list or a comma-separated string (``"0.5, 0.5"``)."""
    (item, *_rest) = typing.get_args(hint)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
        value = [_number(name, v) for v in value]
    if not isinstance(value, (list, tuple)) or not value or len(value) > 64:
        raise SchemaError(name, f"expected a list of 1 to 64 {_describe(item)} values, got {value!r}")
    return tuple(_coerce(name, v, item) for v in value)


def _coerce_mapping(name: str, value: Any, hint: Any) -> dict[str, Any]:
    """``dict[str, float]`` from a JSON object or its text (``'{"hubble": 0.5, "coffee": 0.5}'``)."""
    _key, item = typing.get_args(hint)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SchemaError(name, f"expected a JSON object, got {value!r}") from None
    if not isinstance(value, Mapping) or not value or len(value) > 64 or \
            not all(isinstance(k, str) for k in value):
        raise SchemaError(name, f"expected an object of 1 to 64 named {_describe(item)} values, got {value!r}")
    return {k: _coerce(f"{name}.{k}", v, item) for k, v in value.items()}


def _number(name: str, text: str) -> float:
    return as_float(name, text)


def _describe(hint: Any) -> str:
    parts = []
    for option in _options(hint):
        if typing.get_origin(option) is typing.Literal:
            parts.append(" | ".join(repr(v) for v in typing.get_args(option)))
        else:
            parts.append("null" if option is type(None) else getattr(option, "__name__", str(option)))
    return " | ".join(parts)


def check_target(loaded: LoadedModel, target: int | None) -> None:
    """A class index the model has (None: its prediction), else a SchemaError naming ``target``."""
    if target is not None and not 0 <= target < len(loaded.classes):
        raise SchemaError("target", f"must be in [0, {len(loaded.classes) - 1}] for {loaded.name}, got {target}")


def topk_classes(logits: Tensor, classes: tuple[str, ...], k: int) -> list[tuple[int, str, float]]:
    """Top-k of one row of logits as (index, label, probability)."""
    probs = torch.softmax(logits.float(), dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [(int(i), classes[int(i)], float(v)) for v, i in zip(values, indices, strict=False)]


# ------------------------------------------------------------------------------------ layers


def is_conv(loaded: LoadedModel, name: str) -> bool:
    """Does layer ``name`` hold a 2-D convolution weight (out, in, kh, kw)?"""
    weight = getattr(loaded.net.get_submodule(name), "weight", None)
    return isinstance(weight, Tensor) and weight.ndim == 4


LAYER_CHECKS: dict[str, tuple[Callable[[LoadedModel, LayerInfo], bool], str]] = {
    "spatial": (lambda loaded, row: row.is_spatial, "is not spatial (its output has no height and width)"),
    "conv": (lambda loaded, row: is_conv(loaded, row.name), "is not a 2-D convolution (it has no 4-D weight)"),
}


def resolve_layer(loaded: LoadedModel, spec: Spec, layer: str | None) -> str | None:
    """The request's layer, checked against what the technique needs, or the declared default."""
    if layer is None:
        return None if spec.default_layer == "none" else loaded.default_layer(spec.default_layer)
    if spec.layer == "none":
        raise SchemaError("layer", f"{spec.name} does not use a layer")
    try:
        row = loaded.layer(layer)
    except (UnknownLayerError, KeyError) as exc:
        raise SchemaError("layer", str(exc).strip("'\"")) from None
    check = LAYER_CHECKS.get(spec.layer)
    if check is not None and not check[0](loaded, row):
        raise SchemaError("layer", f"{layer!r} {check[1]}; {spec.title} needs a {spec.layer} layer")
    return layer


def _resolve_request_layer(loaded: LoadedModel, spec: Spec, layer: str | None, values: dict[str, Any]) -> str | None:
    """The request's ``layer``, or ``params.layer`` (the same field spelled as a param, checked the same way and
    named as sent); given twice, the two must agree. Removes ``layer`` from ``values``."""
    if values.get("layer") is None:
        values.pop("layer", None)
        return resolve_layer(loaded, spec, layer)
    given = values.pop("layer")
    if not isinstance(given, str):
        raise SchemaError("params.layer", f"expected a layer name (a string), got {type(given).__name__}")
    if layer is not None and given != layer:
        raise SchemaError("params.layer", f"differs from layer ({given[:80]!r} vs {layer[:80]!r}); give it once")
    try:
        return resolve_layer(loaded, spec, given)
    except SchemaError as exc:
        raise SchemaError("params.layer", exc.message) from None


def technique_spec(name: str, field_name: str = "params.method") -> Spec:
    specs = registry.registry()
    if name not in specs:
        raise SchemaError(field_name, f"must be one of {', '.join(specs)}, got {name!r}")
    return specs[name]


# ------------------------------------------------------------------------------------ families


def answer(loaded: LoadedModel, spec: Spec, layer: str | None, **head: Any) -> Output:
    """The head of one answer (what ran, on which model); the family's renderer fills in the rest."""
    return Output(technique=spec.name, family=spec.family, model=loaded.name, weights=loaded.weights, layer=layer,
                  **head)


class FamilyRunner:
    """How a family's techniques are called and their results drawn. ``display``: the drawing options
    it reads from ``params``."""

    display: tuple[str, ...] = ()

    def prepare(self, loaded: LoadedModel, spec: Spec, layer: str | None, params: Mapping[str, Any]
                ) -> tuple[Any, DisplayOptions, str | None]:
        values = dict(params)
        display = DisplayOptions.parse(values, self.display)
        layer = _resolve_request_layer(loaded, spec, layer, values)
        if layer is not None:
            values["layer"] = layer
        return parse_params(spec.params, values, self.display), display, layer

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        raise NotImplementedError


class PredictionRunner(FamilyRunner):
    """A batch of images → the net run once on all of them (the technique returns the logits) → each image's
    top-k classes and its target's probability and logit. Its techniques' params carry ``topk``."""

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        x = torch.cat([loaded.prepare(_one_image(spec, one))[1] for one in inputs])
        with torch.no_grad(), familiarity.watch(loaded) as seen:
            logits = spec.run(loaded.net, x, technique_params, progress=progress).float()
        probs = torch.softmax(logits, dim=1)
        k = getattr(technique_params, "topk", display.topk)
        known = familiarity.assess(loaded, x, seen)
        out = []
        for i, given in enumerate(targets):
            t = given if given is not None else int(logits[i].argmax())
            out.append(answer(loaded, spec, layer, target=t, target_label=loaded.label(t),
                              topk=topk_classes(logits[i], loaded.classes, k),
                              scalars={"probability": float(probs[i, t]), "logit": float(logits[i, t]), **known[i]}))
        return out


class AttributionRunner(FamilyRunner):
    """A batch of images with one target each → one heat map each, in one call of the technique."""

    display = ("alpha", "colormap", "topk")

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        prepared = [loaded.prepare(_one_image(spec, one)) for one in inputs]
        x = torch.cat([t for _, t in prepared])
        target_t = _targets(loaded, x, targets)
        try:
            with torch.enable_grad():
                result = spec.run(loaded.net, x, target_t, technique_params, progress=progress,
                                  to_input=loaded.preprocessing.normalize)
        except UnsupportedArchitectureError as exc:
            raise SchemaError("params.method", f"{loaded.name}: {exc}") from None
        known = familiarity.assess(loaded, x)
        out = []
        for i, (display_image, _) in enumerate(prepared):
            t = int(result.target[i])
            head = answer(loaded, spec, getattr(technique_params, "layer", None), target=t,
                          target_label=loaded.label(t) if result.objective.startswith("class") else f"channel {t}",
                          topk=topk_classes(result.logits[i], loaded.classes, display.topk),
                          objective=result.objective)
            drawn = render.attribution(head, result, i, display_image, display.alpha, display.colormap or "inferno")
            out.append(dataclasses.replace(drawn, scalars={**drawn.scalars, **known[i]}))
        return out


def _targets(loaded: LoadedModel, x: Tensor, targets: Sequence[int | None]) -> Tensor | None:
    """Images without a target explain their predicted class."""
    if all(t is None for t in targets):
        return None
    predicted: list[int] = []
    if None in targets:
        with torch.no_grad():
            predicted = loaded.net(x).argmax(dim=1).tolist()
    return torch.tensor([t if t is not None else predicted[i] for i, t in enumerate(targets)], device=x.device)


def _one_image(spec: Spec, one: Inputs) -> Image.Image:
    if "image" not in one:
        raise SchemaError("image", f"is required by {spec.name}")
    return one["image"]


class ActivationsRunner(FamilyRunner):
    """Each request on its own: its image (if the technique takes one) → grids."""

    display = ("alpha", "colormap")

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        out = []
        for one in inputs:
            display_image, x = loaded.prepare(_one_image(spec, one)) if spec.inputs else (None, None)
            result = spec.run(loaded.net, x, technique_params, progress=progress)
            out.append(render.grids(answer(loaded, spec, layer), result, display_image, display.alpha,
                                    display.colormap))
        return out


class CorpusRunner(FamilyRunner):
    """A technique over a dataset (its ``params`` name it) or a batch of images: the model and the params →
    vectors, points, curves, patches. A named input holding a list of images arrives as one (N, 3, S, S) batch."""

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        out = []
        takes = (*spec.inputs, *spec.optional_inputs)
        for one in inputs:
            images_in = {name: (torch.cat([loaded.prepare(i)[1] for i in img]) if isinstance(img, list)
                                else loaded.prepare(img)[1])
                         for name, img in one.items() if name in takes}
            result = spec.run(loaded, images_in, technique_params, progress=progress)
            out.append(render.corpus(answer(loaded, spec, layer), result))
        return out


class SynthesisRunner(FamilyRunner):
    """Each request on its own (these are long): its images at full size (bounded) and its target → images;
    a ``batched`` technique gets every request of the group in one call."""

    def run(self, loaded: LoadedModel, spec: Spec, inputs: Sequence[Inputs], targets: Sequence[int | None],
            technique_params: Any, display: DisplayOptions, layer: str | None,
            progress: Progress | None) -> list[Output]:
        out = []
        taken_all = []
        for one in inputs:
            missing = [name for name in spec.inputs if name not in one]
            if missing:
                raise SchemaError(missing[0], f"is required by {spec.name}")
            taken_all.append({name: synthesis_input(img).to(loaded.device) for name, img in one.items()
                              if name in spec.inputs or name in spec.optional_inputs})
        results = spec.run(loaded, taken_all, list(targets), technique_params, progress=progress) if spec.batched \
            else None
        for k, (taken, target) in enumerate(zip(taken_all, targets, strict=True)):
            result = results[k] if results is not None else \
                spec.run(loaded, taken, target, technique_params, progress=progress)
            t = target if target is not None else int(result.scalars.get("target", -1))
            head = answer(loaded, spec, layer, target=t if t >= 0 else None,
                          target_label=loaded.label(t) if t >= 0 else None)
            out.append(render.synthesis(head, result))
        return out


def synthesis_input(img: Image.Image) -> Tensor:
    """A request's image as (3, H, W) in [0, 1], the longer side bounded by twice the synthesis limit."""
    limit = MAX_SYNTHESIS_INPUT_SIDE
    if max(img.size) > limit:
        factor = limit / max(img.size)
        img = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                         Image.Resampling.LANCZOS)
    return images.to_tensor(images.to_rgb(img))


RUNNERS: dict[str, FamilyRunner] = {"prediction": PredictionRunner(), "attribution": AttributionRunner(),
                                    "activations": ActivationsRunner(),
                                    "synthesis": SynthesisRunner(), "corpus": CorpusRunner()}


def run(
    loaded: LoadedModel,
    name: str,
    inputs: Sequence[Inputs] = ({},),
    targets: Sequence[int | None] | None = None,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[Output]:
    """Run technique ``name`` with one set of parameters on one or more requests' inputs.

    ``targets`` holds one class per request (None: the predicted class). A server groups its
    requests by everything but the images and the target and calls this once per group.
    """
    spec = technique_spec(name)
    targets = list(targets) if targets is not None else [None] * len(inputs)
    if len(targets) != len(inputs):
        raise ValueError(f"{len(targets)} targets for {len(inputs)} inputs")
    if not inputs:
        return []
    runner = RUNNERS[spec.family]
    technique_params, display, layer = runner.prepare(loaded, spec, layer, params or {})
    for target in targets:
        check_target(loaded, target)
    outputs = runner.run(loaded, spec, inputs, targets, technique_params, display, layer, progress)
    for output in outputs:
        spec.declared.check(spec.name, output.sections())  # type: ignore[arg-type]
    return outputs


def explain(loaded: LoadedModel, img: Image.Image, method: str, target: int | None = None,
            layer: str | None = None, params: Mapping[str, Any] | None = None) -> Output:
    """Run an attribution technique on one decoded image."""
    return run(loaded, method, [{"image": img}], [target], layer, params)[0]
