"""Random, seeded transforms applied to the image before each forward pass (transformation robustness,
Olah et al. 2017; jitter in Mordvintsev et al. 2015). Each is ``(x (N,3,H,W), generator) → x``; the
randomness is drawn on the CPU generator, so a seed gives the same run on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Transform = Callable[[Tensor, torch.Generator], Tensor]


def _uniform_int(generator: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def jitter(pixels: int) -> Transform:
    """Roll the image by up to ``pixels`` in each direction."""

    def apply(x: Tensor, generator: torch.Generator) -> Tensor:
        if pixels <= 0:
            return x
        dy, dx = _uniform_int(generator, -pixels, pixels), _uniform_int(generator, -pixels, pixels)
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))

    return apply


def pad(pixels: int, value: float = 0.5) -> Transform:
    """Grey border, so the content near the edge is not privileged."""

    def apply(x: Tensor, generator: torch.Generator) -> Tensor:
        return F.pad(x, (pixels,) * 4, value=value) if pixels > 0 else x

    return apply


def scale(factors: Sequence[float]) -> Transform:
    """Resize by a factor drawn from ``factors``."""

    def apply(x: Tensor, generator: torch.Generator) -> Tensor:
        factor = factors[_uniform_int(generator, 0, len(factors) - 1)]
        if factor == 1.0:
            return x
        size = [max(8, round(s * factor)) for s in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    return apply


def rotate(degrees: float) -> Transform:
    """Rotate by an angle drawn uniformly from [-degrees, degrees] (border reflected)."""

    def apply(x: Tensor, generator: torch.Generator) -> Tensor:
        if degrees <= 0:
            return x
        angle = math.radians(float((torch.rand(1, generator=generator) * 2 - 1) * degrees))
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    return apply


def standard(jitter_px: int = 0, pad_px: int = 0, scales: Sequence[float] = (), degrees: float = 0.0
             ) -> list[Transform]:
    """The usual robustness stack, in the usual order: pad, jitter, scale, rotate, jitter."""
    stack: list[Transform] = []
    if pad_px:
        stack.append(pad(pad_px))
    if jitter_px:
        stack.append(jitter(jitter_px))
    if scales:
        stack.append(scale(scales))
    if degrees:
        stack.append(rotate(degrees))
    if jitter_px and (scales or degrees):
        stack.append(jitter(max(1, jitter_px // 4)))
    return stack
