"""The attribution pipeline: image → model input → technique → display images.

This is what the serving layer and the CLI call. It validates the user-facing
parameters (allow-lists, types, ranges) and raises :class:`convlens.schema.SchemaError`
naming the field, so a bad request becomes a 4xx, never a traceback.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from convlens import images
from convlens.attribution import (
    Attribution,
    GuidedParams,
    SaliencyParams,
    Target,
    TargetError,
    guided_backprop,
    saliency,
)
from convlens.cam import GradCamParams, grad_cam
from convlens.hooks import UnknownLayerError, UnsupportedArchitectureError
from convlens.models import LoadedModel
from convlens.schema import SchemaError, WeightsKind


@dataclass(frozen=True)
class Technique:
    """A registered technique: its entry point, its parameter type, and whether it uses a layer."""

    name: str
    run: Callable[[nn.Module, Tensor, Target, Any], Attribution]
    params: type
    title: str
    layer_field: str | None = "layer"


TECHNIQUES: dict[str, Technique] = {
    "vanilla": Technique("vanilla", saliency, SaliencyParams, "Vanilla gradient saliency", layer_field=None),
    "guided": Technique("guided", guided_backprop, GuidedParams, "Guided backprop"),
    "gradcam": Technique("gradcam", grad_cam, GradCamParams, "Grad-CAM"),
}
DISPLAY_PARAMS = ("alpha", "colormap", "topk")


def parse_params(cls: type, values: Mapping[str, Any], prefix: str = "params") -> Any:
    """Build the frozen ``cls`` from user values, checking names, types and literals."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in DISPLAY_PARAMS:
            continue
        if key not in names:
            allowed = ", ".join(sorted(names | set(DISPLAY_PARAMS))) or "none"
            raise SchemaError(f"{prefix}.{key}", f"unknown parameter; allowed: {allowed}")
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)] or [hint]
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            if value in typing.get_args(option):
                return value
            continue
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is int and isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    raise SchemaError(name, f"expected {hint}, got {value!r}")


@dataclass(frozen=True)
class DisplayOptions:
    alpha: float = 0.5
    colormap: str = "inferno"
    topk: int = 5

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> DisplayOptions:
        alpha = values.get("alpha", cls.alpha)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise SchemaError("params.alpha", f"must be a number in [0, 1], got {alpha!r}")
        cmap = values.get("colormap", cls.colormap)
        if cmap not in images.COLORMAPS:
            raise SchemaError("params.colormap", f"must be one of {', '.join(images.COLORMAPS)}, got {cmap!r}")
        topk = values.get("topk", cls.topk)
        if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= 20:
            raise SchemaError("params.topk", f"must be an integer in [1, 20], got {topk!r}")
        return cls(float(alpha), cmap, topk)


@dataclass(frozen=True)
class Explanation:
    """One explained image, ready to encode: every image tensor is in [0, 1] at the model's input size."""

    method: str
    model: str
    weights: WeightsKind
    layer: str | None
    target: int
    target_label: str
    topk: list[tuple[int, str, float]]
    images: dict[str, Tensor]  # "input" (3,S,S), "map" (S,S), "overlay" (3,S,S), maybe "gradient" (3,S,S)
    scalars: dict[str, float]
    objective: str


def topk_classes(logits: Tensor, classes: tuple[str, ...], k: int) -> list[tuple[int, str, float]]:
    """Top-k of one row of logits as (index, label, probability)."""
    probs = torch.softmax(logits.float(), dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [(int(i), classes[int(i)], float(v)) for v, i in zip(values, indices, strict=False)]


def explain(
    loaded: LoadedModel,
    img: Image.Image,
    method: str,
    target: int | None = None,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Explanation:
    """Run technique ``method`` on one decoded image."""
    return explain_batch(loaded, [img], method, [target], layer, params)[0]


def explain_batch(
    loaded: LoadedModel,
    imgs: Sequence[Image.Image],
    method: str,
    targets: Sequence[int | None] | None = None,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[Explanation]:
    """Run one technique with one set of parameters on several images in a single batch.

    ``targets`` holds one class per image (None: the predicted class). A server groups
    its requests by everything but image and target and calls this once per group.
    """
    if not imgs:
        return []
    targets = list(targets) if targets is not None else [None] * len(imgs)
    if len(targets) != len(imgs):
        raise ValueError(f"{len(targets)} targets for {len(imgs)} images")
    technique, technique_params, display_opts = _validate(loaded, method, targets, layer, params or {})
    prepared = [loaded.prepare(img) for img in imgs]
    displays = [d for d, _ in prepared]
    x = torch.cat([t for _, t in prepared])
    with torch.enable_grad():
        result = _run(loaded, technique, x, targets, technique_params)
    gradients = (images.gradient_image(result.gradient).cpu()
                 if method == "guided" and result.gradient is not None else None)
    out = []
    for i, display in enumerate(displays):
        heat = result.map[i].cpu()
        named = {"input": display, "map": heat,
                 "overlay": images.overlay(display, heat, display_opts.alpha, display_opts.colormap)}
        if gradients is not None:
            named["gradient"] = gradients[i]
        t = int(result.target[i])
        out.append(Explanation(
            method=method,
            model=loaded.name,
            weights=loaded.weights,
            layer=getattr(technique_params, "layer", None),
            target=t,
            target_label=loaded.label(t) if result.objective.startswith("class") else f"channel {t}",
            topk=topk_classes(result.logits[i], loaded.classes, display_opts.topk),
            images=named,
            scalars={"score": float(result.score[i]), **result.scalars},
            objective=result.objective,
        ))
    return out


def _validate(
    loaded: LoadedModel, method: str, targets: Sequence[int | None], layer: str | None, params: Mapping[str, Any]
) -> tuple[Technique, Any, DisplayOptions]:
    params = dict(params)
    if method not in TECHNIQUES:
        raise SchemaError("params.method", f"must be one of {', '.join(TECHNIQUES)}, got {method!r}")
    technique = TECHNIQUES[method]
    display_opts = DisplayOptions.parse(params)
    for target in targets:
        if target is not None and not 0 <= target < len(loaded.classes):
            raise SchemaError("target", f"must be in [0, {len(loaded.classes) - 1}] for {loaded.name}, got {target}")
    if layer is not None:
        if technique.layer_field is None:
            raise SchemaError("layer", f"{method} does not use a layer")
        try:
            loaded.layer(layer)
        except (UnknownLayerError, KeyError) as exc:
            raise SchemaError("layer", str(exc).strip("'\"")) from None
        params[technique.layer_field] = layer
    elif method == "gradcam":
        params["layer"] = loaded.default_cam_layer
    return technique, parse_params(technique.params, params), display_opts


def _run(
    loaded: LoadedModel, technique: Technique, x: Tensor, targets: Sequence[int | None], params: Any
) -> Attribution:
    """Run the technique; images without a target explain their predicted class."""
    target: Tensor | None = None
    if any(t is not None for t in targets):
        with torch.no_grad():
            predicted = loaded.net(x).argmax(dim=1).tolist() if None in targets else []
        filled = [t if t is not None else predicted[i] for i, t in enumerate(targets)]
        target = torch.tensor(filled, device=x.device)
    try:
        return technique.run(loaded.net, x, target, params)
    except TargetError as exc:
        raise SchemaError("params.channel" if "channel" in str(exc) else "target", str(exc)) from None
    except UnsupportedArchitectureError as exc:
        raise SchemaError("params.method", f"{loaded.name}: {exc}") from None
