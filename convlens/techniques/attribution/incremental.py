"""Incremental occlusion inference (Nakandala et al. 2019, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD — "Krypton").

A filled window changes only a box of each early activation map (its projective field). The clean forward
runs once with every activation cached; then, for a batch of windows, each convolution / pooling layer is
recomputed only on its changed box plus the halo its kernel reads (cropped from the cached clean map, padded
once with the layer's padding), elementwise layers act on the box alone, and a residual add works on the
union of its operands' boxes. Once a box covers the whole map, or an op has no rule here, the batch is
materialised (clean map with each element's box pasted in) and the rest runs as an ordinary batched forward,
so unknown ops are always correct. Exact up to float rounding; with ``tau`` (Krypton's projective-field
threshold) each box is capped at ``ceil(tau × side)`` around its centre and changes beyond the cap are
dropped (treated as clean): fewer FLOPs, an approximate map.

Under autocast (reduced precision) the head — global pooling and everything after it, i.e. every op whose
result is no longer a spatial map — runs in float32 on float32 inputs: a bfloat16 logit of size 100 is
rounded to ±0.25, more than a window's effect on a confident class, while the head costs ~0 FLOPs
(ResNet-50, random weights: map correlation with float32 0.91 with a bfloat16 head, 0.99 with a float32 one).
"""

from __future__ import annotations

import copy
import math
import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                       nn.Tanh, nn.Identity, nn.Dropout, nn.ELU, nn.Mish)
ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.sigmoid,
                         torch.tanh, F.leaky_relu, F.dropout}
BINARY_FUNCTIONS = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
BINARY_METHODS: dict[str, Callable[..., Tensor]] = {"add": torch.add, "mul": torch.mul, "sub": torch.sub}
UNARY_METHODS: dict[str, Callable[..., Tensor]] = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@dataclass
class Box:
    """Per batch element ``b``, a value equal to the clean map ``clean`` (1, C, H, W) except inside rows
    ``tops[b]:tops[b]+data.shape[2]`` and columns ``lefts[b]:lefts[b]+data.shape[3]``, which hold ``data[b]``
    (B, C, h, w)."""

    data: Tensor
    tops: list[int]
    lefts: list[int]
    clean: Tensor

    @property
    def size(self) -> tuple[int, int]:
        return self.data.shape[2], self.data.shape[3]

    def materialise(self) -> Tensor:
        """The full (B, C, H, W) batch."""
        h, w = self.size
        out = self.clean.expand(len(self.tops), -1, -1, -1).contiguous(memory_format=_format(self.clean))
        for b, (top, left) in enumerate(zip(self.tops, self.lefts, strict=True)):
            out[b, :, top:top + h, left:left + w] = self.data[b]
        return out

    def crop(self, tops: list[int], lefts: list[int], size: tuple[int, int], pad: tuple[int, int] = (0, 0),
             value: float = 0.0) -> Tensor:
        """(B, C, size) crops at rows ``tops[b]:`` / columns ``lefts[b]:`` of this value padded by ``pad`` with
        ``value`` (coordinates in the padded map)."""
        ph, pw = pad
        if size == self.size and all(t == u + ph for t, u in zip(tops, self.tops, strict=True)) and all(
                c == v + pw for c, v in zip(lefts, self.lefts, strict=True)):
            return self.data  # the crop is the changed box itself (e.g. a 1×1 convolution)
        clean = F.pad(self.clean, (pw, pw, ph, ph), value=value) if ph or pw else self.clean
        h, w = self.size
        out = self.data.new_empty(len(tops), self.data.shape[1], *size).contiguous(memory_format=_format(self.clean))
        for b, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            out[b] = clean[0, :, top:top + size[0], left:left + size[1]]
            # where the changed box (shifted by the padding) meets the crop, paste it
            r0, r1 = max(top, self.tops[b] + ph), min(top + size[0], self.tops[b] + ph + h)
            c0, c1 = max(left, self.lefts[b] + pw), min(left + size[1], self.lefts[b] + pw + w)
            if r0 < r1 and c0 < c1:
                out[b, :, r0 - top:r1 - top, c0 - left:c1 - left] = \
                    self.data[b, :, r0 - self.tops[b] - ph:r1 - self.tops[b] - ph,
                              c0 - self.lefts[b] - pw:c1 - self.lefts[b] - pw]
        return out


def _format(t: Tensor) -> torch.memory_format:
    """Channels-last when ``t`` is (the layout oneDNN convolutions run fastest on, on CPU)."""
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


def _cap(starts: list[int], ends: list[int], side: int, tau: float | None) -> tuple[list[int], int]:
    """One box size for all elements covering each [start, end) (clamped at the borders so the size stays
    fixed), capped at ``ceil(tau × side)`` around each range's centre when ``tau`` is set."""
    size = max(1, min(side, max(e - s for s, e in zip(starts, ends, strict=True))))
    if tau is not None and size > (cap := max(1, math.ceil(tau * side))):
        starts = [(s + e - cap) // 2 for s, e in zip(starts, ends, strict=True)]
        size = cap
    return [min(max(s, 0), side - size) for s in starts], size


def _window_rule(starts: list[int], size: int, side: int, out_side: int, kernel: int, stride: int, pad: int,
                 tau: float | None) -> tuple[list[int], int, list[int], int]:
    """Output box (starts, size) hit by input boxes [s, s + size) of a sliding-window op, and the input
    rows it reads, in padded coordinates (starts, size)."""
    lo = [-((-(s + pad - kernel + 1)) // stride) for s in starts]  # ceil
    hi = [(s + size - 1 + pad) // stride + 1 for s in starts]
    out_starts, out_size = _cap(lo, hi, out_side, tau)
    return out_starts, out_size, [o * stride for o in out_starts], (out_size - 1) * stride + kernel


def _sliding(box: Box, out_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
             pad: tuple[int, int], value: float, op: Callable[[Tensor], Tensor], tau: float | None) -> Box:
    """Apply a padding-free sliding-window ``op`` on the changed box of ``box`` (plus its halo)."""
    h, w = box.size
    H, W = box.clean.shape[2:]
    out_tops, oh, in_tops, ih = _window_rule(box.tops, h, H, out_hw[0], kernel[0], stride[0], pad[0], tau)
    out_lefts, ow, in_lefts, iw = _window_rule(box.lefts, w, W, out_hw[1], kernel[1], stride[1], pad[1], tau)
    data = op(box.crop(in_tops, in_lefts, (ih, iw), pad, value))
    return Box(data, out_tops, out_lefts, box.clean)  # clean is replaced by the caller


def _union(boxes: list[Box], tau: float | None) -> tuple[list[int], list[int], tuple[int, int]]:
    H, W = boxes[0].clean.shape[2:]
    tops, h = _cap([min(b.tops[i] for b in boxes) for i in range(len(boxes[0].tops))],
                   [max(b.tops[i] + b.size[0] for b in boxes) for i in range(len(boxes[0].tops))], H, tau)
    lefts, w = _cap([min(b.lefts[i] for b in boxes) for i in range(len(boxes[0].lefts))],
                    [max(b.lefts[i] + b.size[1] for b in boxes) for i in range(len(boxes[0].lefts))], W, tau)
    return tops, lefts, (h, w)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _is_spatially_constant(v: Any) -> bool:
    """A number, or a tensor that broadcasts over a (B, C, H, W) map with the same value at every position
    and for every batch element (a 1-D tensor would broadcast along W)."""
    if not isinstance(v, Tensor):
        return isinstance(v, (int, float, bool))
    if v.dim() <= 1:
        return v.numel() == 1
    return v.dim() <= 4 and v.shape[-1] == 1 and v.shape[-2] == 1 and (v.dim() < 4 or v.shape[0] == 1)


def _is_head(clean: Any) -> bool:
    """Is this value past the spatial part of the network (not a map with more than one position)?"""
    return isinstance(clean, Tensor) and clean.is_floating_point() and not (
        clean.dim() == 4 and clean.shape[2] * clean.shape[3] > 1)


class _Incremental(fx.Interpreter):
    """Runs the traced model on :class:`Box` values where it has a rule and on full tensors elsewhere."""

    def __init__(self, graph: fx.GraphModule, clean: dict[fx.Node, Any], tau: float | None) -> None:
        super().__init__(graph, garbage_collect_values=True)
        self.clean, self.tau = clean, tau
        self.clean_out: Any = None  # the clean value of the node being run

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if _is_head(self.clean_out) and torch.is_autocast_enabled(self.clean_out.device.type):
            return self._in_float32(n, args, kwargs, self.clean_out.device.type)
        if not self._has_box(args, kwargs):
            return getattr(self, n.op)(n.target, args, kwargs)
        out = self._rule(n, args, kwargs)
        if out is None:  # no rule: materialise and run the op on the full batch
            args, kwargs = fx.node.map_aggregate((args, kwargs), lambda v: v.materialise() if isinstance(v, Box)
                                                 else v)
            return getattr(self, n.op)(n.target, args, kwargs)
        if isinstance(out, Box):
            out.clean = self.clean[n]
            if out.size == tuple(out.clean.shape[2:]):
                return out.data  # the box covers the map: the full batch from here on
        return out

    def _in_float32(self, n: fx.Node, args: Any, kwargs: Any, device: str) -> Any:
        """Run node ``n`` with autocast off on float32 copies of its floating arguments (boxes materialised)."""
        def as_float32(v: Any) -> Any:
            v = v.materialise() if isinstance(v, Box) else v
            return v.float() if isinstance(v, Tensor) and v.is_floating_point() else v

        args, kwargs = fx.node.map_aggregate((args, kwargs), as_float32)
        with torch.autocast(device, enabled=False):
            return getattr(self, n.op)(n.target, args, kwargs)

    @staticmethod
    def _has_box(args: Any, kwargs: Any) -> bool:
        found = []
        fx.node.map_aggregate((args, kwargs), lambda v: found.append(v) if isinstance(v, Box) else None)
        return bool(found)

    def _rule(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Box | None:
        if n.op == "call_module":
            return self._module(self.fetch_attr(n.target), args, kwargs)  # type: ignore[arg-type]
        if kwargs.get("inplace") or kwargs.get("out") is not None:
            return None
        if n.op == "call_function" and n.target in ELEMENTWISE_FUNCTIONS and isinstance(args[0], Box) \
                and all(_is_spatially_constant(a) for a in args[1:]):
            return _map(args[0], lambda d: n.target(d, *args[1:], **kwargs))  # type: ignore[operator]
        if n.op == "call_function" and n.target in BINARY_FUNCTIONS and len(args) == 2 and not kwargs:
            return self._binary(n.target, args[0], args[1])  # type: ignore[arg-type]
        if n.op == "call_method" and n.target in UNARY_METHODS and len(args) == 1 and not kwargs:
            return _map(args[0], UNARY_METHODS[str(n.target)])
        if n.op == "call_method" and n.target in BINARY_METHODS and len(args) == 2 and not kwargs:
            return self._binary(BINARY_METHODS[str(n.target)], args[0], args[1])
        return None

    def _module(self, m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Box | None:
        if len(args) != 1 or kwargs or not isinstance(args[0], Box):
            return None
        box: Box = args[0]
        if isinstance(m, ELEMENTWISE_MODULES) and not getattr(m, "inplace", False) and not (
                isinstance(m, nn.Dropout) and m.training):
            return _map(box, m)
        if isinstance(m, nn.BatchNorm2d) and not m.training:
            return _map(box, m)
        if not isinstance(self.clean_out, Tensor) or self.clean_out.dim() != 4:
            return None
        out_hw = (self.clean_out.shape[2], self.clean_out.shape[3])
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            kernel = (m.dilation[0] * (m.kernel_size[0] - 1) + 1, m.dilation[1] * (m.kernel_size[1] - 1) + 1)
            return _sliding(box, out_hw, kernel, _pair(m.stride), _pair(m.padding), 0.0,
                            lambda t: F.conv2d(t, m.weight, m.bias, m.stride, 0, m.dilation, m.groups), self.tau)
        if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
            k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
            kernel = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
            return _sliding(box, out_hw, kernel, s, p, -math.inf,
                            lambda t: F.max_pool2d(t, k, s, 0, d), self.tau)
        if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.divisor_override is None and (
                m.count_include_pad or _pair(m.padding) == (0, 0)):
            k, s = _pair(m.kernel_size), _pair(m.stride)
            return _sliding(box, out_hw, k, s, _pair(m.padding), 0.0, lambda t: F.avg_pool2d(t, k, s, 0), self.tau)
        return None

    def _binary(self, op: Callable[[Any, Any], Tensor], a: Any, b: Any) -> Box | None:
        if isinstance(a, Box) and isinstance(b, Box):
            if a.clean.shape != b.clean.shape:
                return None
            tops, lefts, size = _union([a, b], self.tau)
            return Box(op(a.crop(tops, lefts, size), b.crop(tops, lefts, size)), tops, lefts, a.clean)
        if isinstance(a, Box) and _is_spatially_constant(b):
            return _map(a, lambda d: op(d, b))
        if isinstance(b, Box) and _is_spatially_constant(a):
            return _map(b, lambda d: op(a, d))
        return None


def _map(box: Box, f: Callable[[Tensor], Tensor]) -> Box:
    return Box(f(box.data), box.tops, box.lefts, box.clean)


class _Recorder(fx.Interpreter):
    """The clean forward, keeping every node's value."""

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__(graph, garbage_collect_values=False)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        self.values[n] = out = super().run_node(n)
        return out


class _Root(nn.Module):
    """Holds the model under one name, so its submodules cannot clash with GraphModule attributes
    (e.g. the built-in model's ``code``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Any:
        return self.net(x)


_TRACED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], fx.GraphModule | None]] = \
    weakref.WeakKeyDictionary()


def traced(model: nn.Module) -> fx.GraphModule | None:
    """A symbolic trace of ``model`` with in-place ops turned off and, in eval mode, BatchNorm folded into
    the convolution before it (None if the model does not trace). Cached until a parameter or buffer of
    ``model`` changes."""
    tensors = [*model.parameters(), *model.buffers()]
    versions = (model.training, *(t._version for t in tensors), *(id(t) for t in tensors))
    cached = _TRACED.get(model)
    if cached is not None and cached[0] == versions:
        return cached[1]
    try:
        graph: fx.GraphModule | None = fx.symbolic_trace(_Root(model))  # shares the parameters
    except Exception:  # noqa: BLE001 — any tracing failure means: use the full-batch path
        graph = None
    if graph is not None:
        graph = _without_inplace(graph)
        if not model.training:
            graph = _fold_batchnorm(graph)
    _TRACED[model] = (versions, graph)
    return graph


def _fold_batchnorm(graph: fx.GraphModule) -> fx.GraphModule:
    """Conv2d → BatchNorm2d (eval) pairs become one convolution (fresh modules; the model's are untouched)."""
    from torch.fx.experimental.optimization import fuse

    fused = fuse(graph, inplace=True, no_trace=True)
    assert isinstance(fused, fx.GraphModule)
    return fused


def _without_inplace(graph: fx.GraphModule) -> fx.GraphModule:
    """Replace in-place modules by out-of-place copies and drop ``inplace=True`` keyword arguments, so
    cached clean activations are never overwritten."""
    for n in graph.graph.nodes:
        if n.op == "call_module":
            m = graph.get_submodule(n.target)
            if getattr(m, "inplace", False):
                fresh = copy.copy(m)
                setattr(fresh, "inplace", False)  # noqa: B010 — mypy types Module attributes as Tensor | Module
                name = "_noinplace_" + n.target.replace(".", "_")
                graph.add_submodule(name, fresh)
                n.target = name
        elif n.op == "call_function" and n.kwargs.get("inplace"):
            n.kwargs = {**n.kwargs, "inplace": False}
    graph.recompile()
    return graph


class Session:
    """One image's clean forward through ``graph``; :meth:`logits` then runs batches of filled windows."""

    def __init__(self, graph: fx.GraphModule, x: Tensor, tau: float | None) -> None:
        recorder = _Recorder(graph)
        recorder.run(x)
        self.graph, self.clean, self.tau = graph, recorder.values, tau
        self.largest_per_sample = 0  # elements of the largest value one window needed so far

    def logits(self, filled: Tensor, tops: list[int], lefts: list[int], x: Tensor) -> Tensor:
        """Logits (B, K) of ``x`` (1, C, H, W) with window ``b`` replaced by ``filled[b]`` (B, C, w, w) at
        (``tops[b]``, ``lefts[b]``)."""
        return self._run(Box(filled, tops, lefts, x), len(tops))

    def forward(self, batch: Tensor) -> Tensor:
        """An ordinary forward of whole (B, C, H, W) inputs (e.g. copies of the image, each with a window
        filled), with the head in float32 under autocast like :meth:`logits`."""
        return self._run(batch, len(batch))

    def _run(self, first: Box | Tensor, batch: int) -> Tensor:
        runner = _Incremental(self.graph, self.clean, self.tau)
        env = runner.env = {}
        out: Any = None
        for n in self.graph.graph.nodes:
            if n.op == "placeholder":
                env[n] = first
                continue
            runner.clean_out = self.clean[n]
            env[n] = out = runner.run_node(n)
            value = out.data if isinstance(out, Box) else out
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch:
                self.largest_per_sample = max(self.largest_per_sample, value[0].numel())
            for used in runner.user_to_last_uses.get(n, []):
                del env[used]
        if isinstance(out, Box):
            out = out.materialise()
        return out  # type: ignore[no-any-return]
