"""Layer catalogue: output shape, receptive field and stride of every named module.

Computed from one probe forward pass, not typed in. A ``TorchFunctionMode`` follows
every tensor the pass creates and propagates its geometry (Araujo et al. 2019,
"Computing Receptive Fields of Convolutional Neural Networks", Distill):

    jump_out  = jump_in * stride
    size_out  = size_in + (dilation * (kernel - 1)) * jump_in
    start_out = start_in + (dilation * (kernel - 1) / 2 - padding) * jump_in

Element-wise ops and concatenations (ResNet's residual add, DenseNet's and
Inception's ``torch.cat``) take the largest field of their inputs, which gives the
theoretical receptive field of the longest path. Once the spatial dimensions are
collapsed (flatten, global pooling, linear layers) a unit sees the whole input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from convlens.schema import patch_layer


@dataclass(frozen=True)
class Geometry:
    """Where the units of a spatial tensor look in the input, in input pixels.

    ``size``: receptive-field side; ``jump``: distance between neighbouring units;
    ``start``: centre of unit (0, 0) in continuous coordinates (pixel i spans [i, i+1]).
    ``hw``: the tensor's own spatial size. ``is_global``: spatial dims are gone.
    """

    size: float
    jump: float
    start: float
    hw: tuple[int, int]
    is_global: bool = False

    def then(self, kernel: int, stride: int, padding: int, dilation: int, hw: tuple[int, int]) -> Geometry:
        span = dilation * (kernel - 1)
        return Geometry(
            size=self.size + span * self.jump,
            jump=self.jump * stride,
            start=self.start + (span / 2 - padding) * self.jump,
            hw=hw,
        )

    def collapsed(self) -> Geometry:
        """A unit that pools every position of this tensor."""
        extent = self.size + (max(self.hw) - 1) * self.jump
        return Geometry(size=extent, jump=extent, start=self.start + (max(self.hw) - 1) * self.jump / 2,
                        hw=(1, 1), is_global=True)


@dataclass(frozen=True)
class LayerInfo:
    """One row of the catalogue. ``output_shape`` excludes the batch dimension."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    receptive_field: int
    stride: int
    start: float
    is_global: bool
    produced_by: str  # innermost module whose output this is (a container shares its last child's)

    @property
    def is_spatial(self) -> bool:
        return len(self.output_shape) == 3 and not self.is_global

    def box(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Input-pixel box (top, left, bottom, right), clipped to the image, seen by unit (y, x)."""
        half = self.receptive_field / 2
        cy, cx = self.start + y * self.stride, self.start + x * self.stride
        top, left = max(0, math.floor(cy - half)), max(0, math.floor(cx - half))
        return top, left, min(height, math.ceil(cy + half)), min(width, math.ceil(cx + half))


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


# Positional parameter order of the spatial functions we understand.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "lp_pool2d": ("input", "norm_type", "kernel_size", "stride", "ceil_mode"),
    "adaptive_pool2d": ("input", "output_size"),
}
_ALIASES = {
    "_max_pool2d": "max_pool2d",
    "max_pool2d_with_indices": "max_pool2d",
    "adaptive_avg_pool2d": "adaptive_pool2d",
    "adaptive_max_pool2d": "adaptive_pool2d",
    "_adaptive_max_pool2d": "adaptive_pool2d",
    "adaptive_max_pool2d_with_indices": "adaptive_pool2d",
}


def _bind(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(zip(_SIGNATURES[kind], args, strict=False))
    bound.update(kwargs)
    return bound


def _tensors(obj: Any) -> Iterable[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


class GeometryTracker(TorchFunctionMode):
    """Propagates :class:`Geometry` through every torch call of a forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self._geometry: dict[int, Geometry] = {}
        self._alive: list[Tensor] = []  # keeps ids unique while the pass runs

    def mark(self, t: Tensor, g: Geometry) -> None:
        self._geometry[id(t)] = g
        self._alive.append(t)

    def of(self, t: Any) -> Geometry | None:
        return self._geometry.get(id(t)) if isinstance(t, Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        sources = [g for g in (self.of(t) for t in _tensors((args, kwargs))) if g is not None]
        if not sources:
            return out
        name = getattr(func, "__name__", "")
        kind = _ALIASES.get(name, name)
        for t in _tensors(out):
            if t.ndim >= 2 and id(t) not in self._geometry:
                self.mark(t, self._propagate(kind, args, kwargs, sources, t))
        return out

    def _propagate(
        self, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any], sources: list[Geometry], out: Tensor
    ) -> Geometry:
        src = self.of(args[0]) if args else None
        hw = (int(out.shape[-2]), int(out.shape[-1]))
        if src is not None and not src.is_global and out.ndim == 4 and kind in _SIGNATURES:
            p = _bind(kind, args, kwargs)
            if kind == "conv2d":
                k = max(_pair(p["weight"].shape[-2:]))
                pad = p.get("padding", 0)
                dil = max(_pair(p.get("dilation", 1)))
                pad_px = dil * (k - 1) // 2 if pad == "same" else 0 if pad == "valid" else max(_pair(pad))
                return src.then(k, max(_pair(p.get("stride", 1))), pad_px, dil, hw)
            if kind == "adaptive_pool2d":
                size_in = max(src.hw)
                stride = max(1, size_in // max(hw))
                return src.then(size_in - (max(hw) - 1) * stride, stride, 0, 1, hw)
            k = max(_pair(p["kernel_size"]))
            stride = p.get("stride") or k
            dil = max(_pair(p.get("dilation", 1))) if kind == "max_pool2d" else 1
            return src.then(k, max(_pair(stride)), max(_pair(p.get("padding", 0))), dil, hw)
        widest = max(sources, key=lambda g: g.size)
        if widest.is_global or any(g.is_global for g in sources):
            return max((g for g in sources if g.is_global), key=lambda g: g.size, default=widest.collapsed())
        same_grid = [g for g in sources if g.hw == hw]
        if same_grid:  # element-wise op, concatenation, normalisation, activation...
            best = max(same_grid, key=lambda g: g.size)
            return Geometry(best.size, best.jump, best.start, hw)
        if out.ndim == 4 and src is not None:  # an unknown resampling: rescale the grid
            scale = max(src.hw) / max(max(hw), 1)
            return Geometry(src.size, src.jump * scale, src.start, hw)
        return widest.collapsed()


def layer_catalogue(model: nn.Module, input_size: int, in_channels: int = 3) -> list[LayerInfo]:
    """Every named module reached by a forward pass, in the order its output is produced.

    Uses one probe pass on zeros of shape (1, C, S, S) on the model's device. A
    module called several times (ResNet's shared ``relu``) reports its last call.
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    tracker = GeometryTracker()
    rows: dict[str, LayerInfo] = {}
    producers: dict[int, str] = {}  # hooks fire innermost first

    def hook_for(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                return
            g = tracker.of(output)
            if g is None:
                return
            rows.pop(name, None)  # re-insert so the order is that of the last call
            producer = producers.setdefault(id(output), name)
            rows[name] = LayerInfo(
                name=name,
                kind=type(module).__name__,
                output_shape=tuple(int(s) for s in output.shape[1:]),
                receptive_field=round(g.size),
                stride=round(g.jump),
                start=g.start,
                is_global=g.is_global or output.ndim < 4,
                produced_by=producer,
            )

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    x = torch.zeros(1, in_channels, input_size, input_size, device=device)
    try:
        with torch.no_grad(), tracker:
            tracker.mark(x, Geometry(1.0, 1.0, 0.5, (input_size, input_size)))
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return list(rows.values())


_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


def default_cam_layer(model: nn.Module, catalogue: list[LayerInfo]) -> str:
    """The last spatial layer (spatial size > 1) whose output is not a pooling result.

    Grad-CAM's usual choice (Selvaraju et al. 2017: "the last convolutional layer").
    Of modules producing the same tensor (a block and its last ReLU) the shortest
    name wins, e.g. ``layer4`` rather than ``layer4.1.relu``; VGG gets ``features.29``.
    """
    candidates = [
        row for row in catalogue
        if row.is_spatial and min(row.output_shape[1:]) > 1
        and not isinstance(model.get_submodule(row.produced_by), _POOLING)
    ]
    if not candidates:
        raise ValueError("the model has no spatial layer for Grad-CAM")
    last = candidates[-1]
    same = [r.name for r in candidates if r.produced_by == last.produced_by]
    return min(reversed(same), key=len)  # ties: the later one (a ReLU applied in place over its conv)


def default_patch_layer(catalogue: list[LayerInfo], input_size: int) -> str:
    """Top patches' default: the deepest spatial layer whose field is at most half the input side
    (:func:`convlens.schema.patch_layer`), so each patch is a part of an image."""
    name = patch_layer(((r.name, r.receptive_field, r.is_spatial) for r in catalogue), input_size)
    if name is None:
        raise ValueError("the model has no spatial layer for top patches")
    return name


def default_code_layer(model: nn.Module, catalogue: list[LayerInfo]) -> str:
    """The layer whose output feeds the last ``nn.Linear`` (the CNN code: CS231n's fc7, ResNet's pooled
    features, the built-in model's ``code``); the last spatial layer when the model has no linear layer
    (SqueezeNet). Of modules producing the same tensor the shortest name wins."""
    names = [row.name for row in catalogue]
    linear = [k for k, row in enumerate(catalogue) if isinstance(model.get_submodule(row.name), nn.Linear)]
    if not linear or linear[-1] == 0:
        return default_cam_layer(model, catalogue)
    before = catalogue[linear[-1] - 1]
    same = [n for n, row in zip(names, catalogue, strict=True) if row.produced_by == before.produced_by]
    return min(reversed(same), key=len)
