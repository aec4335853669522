"""Incremental occlusion inference (Nakandala et al. 2019, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD — "Krypton").

A filled window changes only a box of each early activation map (its projective field). The clean forward
runs once with every activation cached; then each value of a batch of windows is carried as the clean map
plus a *change* inside one box per window (:class:`Box`). A convolution is linear, so it maps the change alone
(zero-padded, no bias) and only on the box plus the halo its kernel reads; an elementwise or pooling op that
is not linear is applied to clean + change on the box and the clean result subtracted; a residual add adds the
changes on the union of the boxes. Boxes grow with each layer until they cover the map, and then simply stay
whole-map boxes. The head (every op whose result is no longer a spatial map) and any op without a rule here
run on the materialised batch (clean map plus change) as an ordinary forward, so unknown ops are always
correct. Exact up to float rounding; with ``tau`` (Krypton's projective-field threshold) each box is capped at
``ceil(tau × side)`` around its centre and changes beyond the cap are dropped (treated as clean): fewer FLOPs,
an approximate map.

Reduced precision (``dtype`` bfloat16/float16) applies to the changes only: they are held and convolved in
``dtype``, while the clean activations, the clean maps non-linear rules compare against, and the head stay
float32. Rounding is then relative to a window's effect, not to the activation it perturbs: a bfloat16 forward
of the activations themselves rounds a logit near 100 to ±0.25 and an activation near 300 to ±1, more than a
window moves them (ResNet-50, random weights, window 32: map correlation with float32 0.91 for a bfloat16
forward, 0.992 with a float32 head after it, 0.9999 for bfloat16 changes).
"""

from __future__ import annotations

import copy
import math
import operator
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                       nn.Tanh, nn.Identity, nn.Dropout, nn.ELU, nn.Mish, nn.BatchNorm2d)
ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.sigmoid,
                         torch.tanh, F.leaky_relu, F.dropout}
BINARY_FUNCTIONS = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
BINARY_METHODS: dict[str, Callable[..., Tensor]] = {"add": torch.add, "mul": torch.mul, "sub": torch.sub}
UNARY_METHODS: dict[str, Callable[..., Tensor]] = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
ADDITIVE: dict[Callable[..., Any], float] = {  # the change of a ± b is da ± db
    operator.add: 1.0, torch.add: 1.0, operator.sub: -1.0, torch.sub: -1.0}


@dataclass
class Box:
    """Per batch element ``b``, the clean map ``clean`` (1, C, H, W) plus the change ``data[b]`` (B, C, h, w)
    inside rows ``tops[b]:tops[b]+h`` and columns ``lefts[b]:lefts[b]+w`` (no change elsewhere)."""

    data: Tensor
    tops: list[int]
    lefts: list[int]
    clean: Tensor

    @property
    def size(self) -> tuple[int, int]:
        return self.data.shape[2], self.data.shape[3]

    def materialise(self) -> Tensor:
        """The full (B, C, H, W) batch, float32 like the clean map."""
        h, w = self.size
        if (h, w) == tuple(self.clean.shape[2:]):
            return self.clean + self.data.float()
        out = self.clean.expand(len(self.tops), -1, -1, -1).contiguous(memory_format=_format(self.clean))
        for b, (top, left) in enumerate(zip(self.tops, self.lefts, strict=True)):
            out[b, :, top:top + h, left:left + w] += self.data[b].float()
        return out

    def crop(self, tops: list[int], lefts: list[int], size: tuple[int, int], pad: tuple[int, int] = (0, 0)) -> Tensor:
        """(B, C, size) *changes* at rows ``tops[b]:`` / columns ``lefts[b]:`` of this value padded by ``pad``
        (coordinates in the padded map; zero outside the box)."""
        ph, pw = pad
        h, w = self.size
        down = [t - (u + ph) for t, u in zip(tops, self.tops, strict=True)]  # crop start, from the box's start
        right = [c - (v + pw) for c, v in zip(lefts, self.lefts, strict=True)]
        if len(set(down)) == 1 and len(set(right)) == 1:  # one offset for all: a pad (or a crop) of the batch
            dt, dl = down[0], right[0]
            if (dt, dl) == (0, 0) and size == (h, w):
                return self.data
            return F.pad(self.data, (-dl, dl + size[1] - w, -dt, dt + size[0] - h))
        # zero margins so every crop lies inside, then one gather of (B, size) windows, one per element
        top, bottom = max(0, -min(down)), max(0, max(down) + size[0] - h)
        left, right_ = max(0, -min(right)), max(0, max(right) + size[1] - w)
        padded = F.pad(self.data, (left, right_, top, bottom)).permute(0, 2, 3, 1)  # (B, H', W', C)
        windows = padded.unfold(1, size[0], 1).unfold(2, size[1], 1).permute(0, 1, 2, 4, 5, 3)
        rows = torch.tensor([d + top for d in down], device=self.data.device)
        cols = torch.tensor([r + left for r in right], device=self.data.device)
        return windows[torch.arange(len(down), device=self.data.device), rows, cols].permute(0, 3, 1, 2)


def gather(clean: Tensor, tops: list[int], lefts: list[int], size: tuple[int, int], pad: tuple[int, int] = (0, 0),
           value: float = 0.0) -> Tensor:
    """(B, C, size) crops of ``clean`` (1, C, H, W) padded by ``pad`` with ``value``, at rows ``tops[b]:`` and
    columns ``lefts[b]:`` of the padded map (a broadcast view when every crop is at the same place)."""
    if pad != (0, 0):
        clean = F.pad(clean, (pad[1], pad[1], pad[0], pad[0]), value=value)
    h, w = size
    if len(set(tops)) == 1 and len(set(lefts)) == 1:
        return clean[:, :, tops[0]:tops[0] + h, lefts[0]:lefts[0] + w].expand(len(tops), -1, -1, -1)
    windows = clean[0].unfold(1, h, 1).unfold(2, w, 1).permute(1, 2, 3, 4, 0)  # (H-h+1, W-w+1, h, w, C): a view
    return windows[tops, lefts].permute(0, 3, 1, 2)  # (B, C, h, w), channels-last like the changes


def _format(t: Tensor) -> torch.memory_format:
    """Channels-last when ``t`` is (the layout oneDNN convolutions run fastest on, on CPU)."""
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


Limit = tuple[int, list[float] | None]  # a box's largest side, and the centres to cap around (None: the ranges')


def _cap(starts: list[int], ends: list[int], side: int, limit: Limit | None) -> tuple[list[int], int]:
    """One box size for all elements covering each [start, end) (clamped at the borders so the size stays
    fixed), capped at ``limit`` around each element's given centre, or its range's centre."""
    size = max(1, min(side, max(e - s for s, e in zip(starts, ends, strict=True))))
    if limit is not None and size > (cap := max(1, limit[0])):
        centres = limit[1]
        starts = [(s + e - cap) // 2 for s, e in zip(starts, ends, strict=True)] if centres is None else [
            cap_start(c, cap) for c in centres]
        size = cap
    return [min(max(s, 0), side - size) for s in starts], size


def cap_start(centre: float, size: int) -> int:
    """First position of a box of ``size`` centred at ``centre`` (map coordinates, before clamping)."""
    return math.floor(centre - size / 2 + 0.5)


def tau_limit(tau: float, side: int) -> int:
    """Krypton's projective-field threshold: a box may span at most ``ceil(tau × side)`` of its map."""
    return max(1, math.ceil(tau * side))


def _window_rule(starts: list[int], size: int, side: int, out_side: int, kernel: int, stride: int, pad: int,
                 limit: Limit | None) -> tuple[list[int], int, list[int], int]:
    """Output box (starts, size) hit by input boxes [s, s + size) of a sliding-window op, and the input
    rows it reads, in padded coordinates (starts, size)."""
    lo = [-((-(s + pad - kernel + 1)) // stride) for s in starts]  # ceil
    hi = [(s + size - 1 + pad) // stride + 1 for s in starts]
    out_starts, out_size = _cap(lo, hi, out_side, limit)
    return out_starts, out_size, [o * stride for o in out_starts], (out_size - 1) * stride + kernel


def _union(boxes: list[Box], limits: tuple[Limit | None, Limit | None]) -> tuple[list[int], list[int],
                                                                                tuple[int, int]]:
    H, W = boxes[0].clean.shape[2:]
    tops, h = _cap([min(b.tops[i] for b in boxes) for i in range(len(boxes[0].tops))],
                   [max(b.tops[i] + b.size[0] for b in boxes) for i in range(len(boxes[0].tops))], H, limits[0])
    lefts, w = _cap([min(b.lefts[i] for b in boxes) for i in range(len(boxes[0].lefts))],
                    [max(b.lefts[i] + b.size[1] for b in boxes) for i in range(len(boxes[0].lefts))], W, limits[1])
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


RELUS = (nn.ReLU, F.relu, torch.relu, "relu")
WHOLE_MAP_AT = 0.5  # a box covering this share of its map becomes a whole-map box
WORTH_CAPPING = 0.6  # a measured cap is kept only if its box is at most this share of its map


@dataclass(frozen=True)
class Caps:
    """The largest box a change may occupy on each map: Krypton's uniform ``tau`` × the map's side, or measured
    ``sizes`` (rows, columns) per node name (:meth:`Session.measure`). Neither: exact."""

    tau: float | None = None
    sizes: Mapping[str, tuple[int, int]] | None = None

    def limit(self, node: str, axis: int, side: int) -> int | None:
        if self.tau is not None:
            return tau_limit(self.tau, side)
        size = self.sizes.get(node) if self.sizes is not None else None
        return None if size is None or size[axis] >= side else size[axis]

    @property
    def centred(self) -> bool:
        """Measured caps sit around each window's own centre (where they were measured); τ around each range's."""
        return self.tau is None

    @property
    def active(self) -> bool:
        return self.tau is not None or bool(self.sizes)


class _Probe:
    """Records each window's change energy (the squared change summed over channels) along the rows and columns
    of every map where a cap could bind, to size caps per map size (see :meth:`sizes`)."""

    def __init__(self, centres: tuple[Tensor, Tensor], input_hw: tuple[int, int]) -> None:
        self.centres, self.input_hw = centres, input_hw
        self.dropped: dict[str, tuple[Tensor, Tensor]] = {}  # per node, (B, H) and (B, W) shares left out by caps
        self.sides: dict[str, tuple[int, int]] = {}
        self.cappable: set[str] = set()  # nodes whose box a cap would limit
        self.saturated: set[tuple[int, int]] = set()  # map sizes where a window's exact box covers most of the map

    def see(self, node: str, box: Box) -> None:
        H, W = box.clean.shape[2:]
        energy = box.data.float().square().sum(1)  # (B, h, w)
        self.dropped[node] = (_dropped(energy.sum(2), box.tops, H, self.centres[0] * H / self.input_hw[0]),
                              _dropped(energy.sum(1), box.lefts, W, self.centres[1] * W / self.input_hw[1]))
        self.sides[node] = (H, W)
        if box.size[0] * box.size[1] >= WHOLE_MAP_AT * H * W:
            self.saturated.add((H, W))

    def sizes(self, share: float) -> dict[str, tuple[int, int]]:
        """One cap per map size where windows' boxes grow over most of the map: the smallest rows (columns) such
        that, for every window seen, the cap leaves out at most ``share`` / 2 of its change energy on average
        over that size's maps (the largest share of FLOPs of a deep network is there, and one size for all of a
        stage's maps keeps its boxes from growing and shrinking). Only caps leaving out a good part of the map."""
        out = {}
        for hw in self.saturated:
            nodes = [n for n in self.cappable if self.sides.get(n) == hw and n in self.dropped]
            if not nodes:
                continue
            caps = [_smallest(torch.stack([self.dropped[n][axis] for n in nodes]).mean(0), share / 2)
                    for axis in (0, 1)]
            if caps[0] * caps[1] <= WORTH_CAPPING * hw[0] * hw[1]:
                out.update({n: (caps[0], caps[1]) for n in nodes})
        return out


def _dropped(profile: Tensor, starts: list[int], side: int, centres: Tensor) -> Tensor:
    """(B, side): the share of each element's ``profile`` (B, L), which starts at ``starts[b]``, left outside a
    span of k = 1 … side positions around ``centres[b]`` (moved inside the map, like :func:`_cap`)."""
    B, L = profile.shape
    full = profile.new_zeros(B, side + 1)
    index = torch.tensor(starts, device=profile.device)[:, None] + torch.arange(L, device=profile.device) + 1
    full.scatter_(1, index, profile)
    cum = full.cumsum(1)  # cum[:, j] = energy of positions < j
    k = torch.arange(1, side + 1, device=profile.device)
    first = (centres.to(profile.device)[:, None] - k / 2 + 0.5).floor().long()  # as cap_start
    first = torch.minimum(first.clamp_min(0), side - k)
    inside = cum.gather(1, first + k) - cum.gather(1, first)
    total = cum[:, -1:]
    return torch.where(total > 0, 1 - inside / total.clamp_min(1e-30), torch.zeros_like(inside))


def _smallest(dropped: Tensor, share: float) -> int:
    """Smallest span k (1-based) whose share ``dropped`` (B, side) left out is at most ``share`` for every b."""
    ok = (dropped <= share).all(0)
    return int(ok.nonzero()[0]) + 1 if bool(ok.any()) else dropped.shape[1]


def largest(sizes: Iterable[Mapping[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """Per node, the largest rows and columns over several measurements."""
    out: dict[str, tuple[int, int]] = {}
    for one in sizes:
        for node, (h, w) in one.items():
            old = out.get(node, (0, 0))
            out[node] = (max(old[0], h), max(old[1], w))
    return out


class _Incremental(fx.Interpreter):
    """Runs the traced model on :class:`Box` values where it has a rule and on full tensors elsewhere.
    Changes are held, and convolved, in ``dtype`` (convolution weights in ``weights``); ``relu`` caches the
    clean maps of the ReLU rule per node; ``probe`` (if any) sees every box."""

    def __init__(self, graph: fx.GraphModule, clean: dict[fx.Node, Any], caps: Caps, dtype: torch.dtype,
                 weights: dict[str, Tensor], relu: dict[fx.Node, tuple[Tensor, Tensor]],
                 probe: _Probe | None = None, centres: tuple[list[float], list[float]] = ([], []),
                 input_hw: tuple[int, int] = (1, 1)) -> None:
        super().__init__(graph, garbage_collect_values=True)
        self.centres, self.input_hw = centres, input_hw  # each window's centre, in input pixels
        self.clean, self.caps, self.dtype, self.weights, self.relu = clean, caps, dtype, weights, relu
        self.probe = probe
        self.node: fx.Node | None = None  # the node being run

    @property
    def clean_out(self) -> Any:
        assert self.node is not None
        return self.clean[self.node]

    def _limit(self, axis: int, side: int) -> Limit | None:
        assert self.node is not None
        if self.probe is not None:
            self.probe.cappable.add(self.node.name)
        size = self.caps.limit(self.node.name, axis, side)
        if size is None:
            return None
        centred = self.caps.centred and len(self.centres[axis]) > 0
        return size, [c * side / self.input_hw[axis] for c in self.centres[axis]] if centred else None

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if not self._has_box(args, kwargs):
            return getattr(self, n.op)(n.target, args, kwargs)
        out = None if _is_head(self.clean_out) else self._rule(n, args, kwargs)
        if out is None:  # the head, or no rule: materialise and run the op on the full batch in float32
            args, kwargs = fx.node.map_aggregate((args, kwargs), lambda v: v.materialise() if isinstance(v, Box)
                                                 else v)
            return getattr(self, n.op)(n.target, args, kwargs)
        out.clean = self.clean_out
        if self.probe is not None and n.name in self.probe.cappable:  # only where a cap could bind
            self.probe.see(n.name, out)
        H, W = out.clean.shape[2:]
        h, w = out.size
        # nearly whole: per-element crops cost more (not when τ caps boxes around each range's own centre, which
        # a whole-map box no longer has, nor where a measured cap holds this box)
        if not self.caps.active and (h, w) != (H, W) \
                and h * w >= WHOLE_MAP_AT * H * W:
            zeros = [0] * len(out.tops)
            return Box(out.crop(zeros, zeros, (H, W)), zeros, zeros, out.clean)
        return out

    @staticmethod
    def _has_box(args: Any, kwargs: Any) -> bool:
        found = []
        fx.node.map_aggregate((args, kwargs), lambda v: found.append(v) if isinstance(v, Box) else None)
        return bool(found)

    def _rule(self, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Box | None:
        if n.op == "call_module":
            return self._module(str(n.target), self.fetch_attr(str(n.target)), args, kwargs)
        if kwargs.get("inplace") or kwargs.get("out") is not None:
            return None
        if n.op == "call_function" and n.target in ELEMENTWISE_FUNCTIONS and isinstance(args[0], Box) \
                and all(_is_spatially_constant(a) for a in args[1:]):
            if n.target in RELUS and len(args) == 1:
                return self._relu(args[0])
            return self._elementwise(args[0], lambda v: n.target(v, *args[1:], **kwargs))  # type: ignore[operator]
        if n.op == "call_function" and n.target in BINARY_FUNCTIONS and len(args) == 2 and not kwargs:
            return self._binary(n.target, args[0], args[1])  # type: ignore[arg-type]
        if n.op == "call_method" and n.target in UNARY_METHODS and len(args) == 1 and not kwargs:
            return self._relu(args[0]) if n.target in RELUS else self._elementwise(args[0],
                                                                                  UNARY_METHODS[str(n.target)])
        if n.op == "call_method" and n.target in BINARY_METHODS and len(args) == 2 and not kwargs:
            return self._binary(BINARY_METHODS[str(n.target)], args[0], args[1])
        return None

    def _module(self, name: str, m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Box | None:
        if len(args) != 1 or kwargs or not isinstance(args[0], Box):
            return None
        box: Box = args[0]
        if isinstance(m, ELEMENTWISE_MODULES) and not getattr(m, "inplace", False) and not (
                isinstance(m, (nn.Dropout, nn.BatchNorm2d)) and m.training):
            return self._relu(box) if type(m) is nn.ReLU else self._elementwise(box, m)
        if not isinstance(self.clean_out, Tensor) or self.clean_out.dim() != 4:
            return None
        out_hw = (self.clean_out.shape[2], self.clean_out.shape[3])
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            kernel = (m.dilation[0] * (m.kernel_size[0] - 1) + 1, m.dilation[1] * (m.kernel_size[1] - 1) + 1)
            weight = self.weights.get(name, m.weight)

            def conv(t: Tensor, padding: tuple[int, int] = (0, 0)) -> Tensor:  # linear: the change alone, no bias
                return F.conv2d(t, weight, None, m.stride, padding, m.dilation, m.groups)
            return self._sliding(box, out_hw, kernel, _pair(m.stride), _pair(m.padding), conv)
        if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
            k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
            kernel = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
            return self._sliding(box, out_hw, kernel, s, p, lambda t, _p=(0, 0): F.max_pool2d(t, k, s, 0, d),
                                 -math.inf)
        if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.divisor_override is None and (
                m.count_include_pad or _pair(m.padding) == (0, 0)):
            k, s = _pair(m.kernel_size), _pair(m.stride)
            return self._sliding(box, out_hw, k, s, _pair(m.padding),
                                 lambda t, padding=(0, 0): F.avg_pool2d(t, k, s, padding))
        return None

    def _sliding(self, box: Box, out_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int], op: Callable[..., Tensor], value: float | None = None) -> Box:
        """A sliding-window ``op(t, padding)`` on the changed box of ``box`` plus its halo: on the change alone
        if ``op`` is linear (``value`` None: zero padding), else on clean + change padded with ``value`` minus
        the clean result."""
        h, w = box.size
        H, W = box.clean.shape[2:]
        out_tops, oh, in_tops, ih = _window_rule(box.tops, h, H, out_hw[0], kernel[0], stride[0], pad[0],
                                                 self._limit(0, out_hw[0]))
        out_lefts, ow, in_lefts, iw = _window_rule(box.lefts, w, W, out_hw[1], kernel[1], stride[1], pad[1],
                                                   self._limit(1, out_hw[1]))
        if value is None and (h, w) == (H, W) and (oh, ow) == out_hw:  # whole map to whole map: pad in the op
            return Box(op(box.data, pad), out_tops, out_lefts, box.clean)
        if value is None and in_tops == box.tops and in_lefts == box.lefts and (ih, iw) == (h + 2 * pad[0],
                                                                                        w + 2 * pad[1]):
            return Box(op(box.data, pad), out_tops, out_lefts, box.clean)  # the box and its halo: pad in the op
        change = box.crop(in_tops, in_lefts, (ih, iw), pad)
        if value is None:
            return Box(op(change), out_tops, out_lefts, box.clean)
        before = gather(box.clean, in_tops, in_lefts, (ih, iw), pad, value)
        after = op(before + change.float()) - gather(self.clean_out, out_tops, out_lefts, (oh, ow))
        return Box(after.to(self.dtype), out_tops, out_lefts, box.clean)

    def _relu(self, box: Box) -> Box:
        """relu(c + d) − relu(c) = max(d + min(c, 0), −relu(c)): two passes over the change, rounded only where
        it is (each term is exact or bounded by |d| × the dtype's precision)."""
        assert self.node is not None
        if self.node not in self.relu:
            c, r = box.clean, self.clean_out
            self.relu[self.node] = ((c - r).to(self.dtype), (-r).to(self.dtype))
        low, floor = (gather(t, box.tops, box.lefts, box.size) for t in self.relu[self.node])
        out = box.data + low
        return Box(torch.maximum(out, floor, out=out), box.tops, box.lefts, box.clean)

    def _elementwise(self, box: Box, f: Callable[[Tensor], Tensor]) -> Box:
        """f(clean + change) − f(clean) on the box, in float32."""
        at = box.tops, box.lefts, box.size
        after = f(gather(box.clean, *at) + box.data.float()) - gather(self.clean_out, *at)
        return Box(after.to(self.dtype), box.tops, box.lefts, box.clean)

    def _binary(self, op: Callable[[Any, Any], Tensor], a: Any, b: Any) -> Box | None:
        if isinstance(a, Box) and isinstance(b, Box):
            if a.clean.shape != b.clean.shape:
                return None
            tops, lefts, size = _union([a, b], (self._limit(0, a.clean.shape[2]), self._limit(1, a.clean.shape[3])))
            da, db = a.crop(tops, lefts, size), b.crop(tops, lefts, size)
            if op in ADDITIVE:
                return Box(da + db if ADDITIVE[op] > 0 else da - db, tops, lefts, a.clean)
            va, vb = gather(a.clean, tops, lefts, size) + da.float(), gather(b.clean, tops, lefts, size) + db.float()
            after = op(va, vb) - gather(self.clean_out, tops, lefts, size)
            return Box(after.to(self.dtype), tops, lefts, a.clean)
        if isinstance(a, Box) and _is_spatially_constant(b):
            return Box(a.data, a.tops, a.lefts, a.clean) if op in ADDITIVE else self._elementwise(a, lambda v: op(v, b))
        if isinstance(b, Box) and _is_spatially_constant(a):
            if op in ADDITIVE:
                return Box(b.data if ADDITIVE[op] > 0 else -b.data, b.tops, b.lefts, b.clean)
            return self._elementwise(b, lambda v: op(a, v))
        return None


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


def _centres(filled: Tensor, tops: list[int], lefts: list[int]) -> tuple[list[float], list[float]]:
    """Each window's centre (rows, columns) in input pixels."""
    h, w = filled.shape[2:]
    return [t + h / 2 for t in tops], [left + w / 2 for left in lefts]


class Session:
    """One image's clean float32 forward through ``graph``; :meth:`logits` then runs batches of filled
    windows, :meth:`forward` batches of whole copies, with convolutions of the changes in ``dtype`` and boxes
    capped by ``caps``."""

    def __init__(self, graph: fx.GraphModule, x: Tensor, caps: Caps | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        recorder = _Recorder(graph)
        with torch.autocast(x.device.type, enabled=False):
            recorder.run(x.float())
        self.graph, self.clean, self.x = graph, recorder.values, x.float()
        self.caps = caps or Caps()
        self._set_dtype(dtype)
        self.largest_per_sample = 0  # elements of the largest value one window needed so far

    def _set_dtype(self, dtype: torch.dtype) -> None:
        called = {str(n.target) for n in self.graph.graph.nodes if n.op == "call_module"}
        self.dtype = dtype
        self.weights: dict[str, Tensor] = {} if dtype == torch.float32 else {
            name: m.weight.to(dtype) for name, m in self.graph.named_modules()
            if name in called and isinstance(m, nn.Conv2d)}
        self.relu: dict[fx.Node, tuple[Tensor, Tensor]] = {}

    def variant(self, caps: Caps, dtype: torch.dtype) -> Session:
        """This image's session with other caps or dtype, sharing its clean forward (and, in the same dtype,
        its cached clean maps)."""
        if caps == self.caps and dtype == self.dtype:
            return self
        other = copy.copy(self)
        other.caps = caps
        if dtype != self.dtype:
            other._set_dtype(dtype)
        return other

    def logits(self, filled: Tensor, tops: list[int], lefts: list[int]) -> Tensor:
        """Logits (B, K) of the image with window ``b`` replaced by ``filled[b]`` (B, C, w, w) at
        (``tops[b]``, ``lefts[b]``)."""
        return self._run(self._first(filled, tops, lefts), len(tops), self.caps, None, _centres(filled, tops, lefts))

    def measure(self, filled: Tensor, tops: list[int], lefts: list[int], share: float) -> tuple[Tensor, Caps]:
        """Exact logits (B, K) of these windows, and the caps that would have dropped at most about ``share`` of
        each one's change energy over all maps (the largest box any of them needed on each)."""
        centres = _centres(filled, tops, lefts)
        probe = _Probe((torch.tensor(centres[0]), torch.tensor(centres[1])), (self.x.shape[2], self.x.shape[3]))
        logits = self._run(self._first(filled, tops, lefts), len(tops), Caps(), probe, centres)
        return logits, Caps(sizes=probe.sizes(share))

    def forward(self, batch: Tensor) -> Tensor:
        """Logits of whole (B, C, H, W) inputs (e.g. copies of the image, each with a window filled)."""
        n = len(batch)
        return self._run(Box((batch.float() - self.x).to(self.dtype), [0] * n, [0] * n, self.x), n, self.caps)

    def _first(self, filled: Tensor, tops: list[int], lefts: list[int]) -> Box:
        h, w = filled.shape[2:]
        return Box((filled.float() - gather(self.x, tops, lefts, (h, w))).to(self.dtype), tops, lefts, self.x)

    def _run(self, first: Box, batch: int, caps: Caps, probe: _Probe | None = None,
             centres: tuple[list[float], list[float]] = ([], [])) -> Tensor:
        runner = _Incremental(self.graph, self.clean, caps, self.dtype, self.weights, self.relu, probe, centres,
                              (self.x.shape[2], self.x.shape[3]))
        env = runner.env = {}
        out: Any = None
        with torch.autocast(first.data.device.type, enabled=False):
            for n in self.graph.graph.nodes:
                if n.op == "placeholder":
                    env[n] = first
                    continue
                env[n] = out = runner.run_node(n)
                value = out.data if isinstance(out, Box) else out
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch:
                    self.largest_per_sample = max(self.largest_per_sample, value[0].numel())
                for used in runner.user_to_last_uses.get(n, []):
                    del env[used]
        if isinstance(out, Box):
            out = out.materialise()
        return out  # type: ignore[no-any-return]
