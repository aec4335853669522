"""A small feed-forward transformation network (Johnson, Alahi & Fei-Fei 2016) with instance normalisation
(Ulyanov, Vedaldi & Lempitsky 2016) made conditional on the style (Dumoulin, Shlens & Kudlur 2017): every
normalisation layer holds one scale γ_s and shift β_s per style s, and a blend w (Σ_s w_s = 1) uses
γ = Σ_s w_s γ_s, β = Σ_s w_s β_s — so a one-hot blend is exactly that style's network.

    (N, 3, H, W) in [0, 1], blend (N, S) → (N, 3, H, W) in [0, 1]     (H, W multiples of 4 are exact)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class NetConfig:
    """Widths of the three encoder stages and the number of residual blocks."""

    widths: tuple[int, int, int] = (16, 32, 48)
    blocks: int = 3

    def to_dict(self) -> dict[str, object]:
        return {"widths": list(self.widths), "blocks": self.blocks}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetConfig:
        a, b, c = (int(w) for w in data["widths"])
        return cls(widths=(a, b, c), blocks=int(data["blocks"]))


class ConditionalInstanceNorm(nn.Module):
    """Instance norm with per-style affine parameters ``gamma``/``beta`` (S, C), mixed by the blend (N, S)."""

    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(styles, channels))
        self.beta = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        normed = F.instance_norm(x, eps=1e-5)
        gamma = (blend @ self.gamma)[:, :, None, None]
        beta = (blend @ self.beta)[:, :, None, None]
        return normed * gamma + beta


class _ConvNorm(nn.Module):
    """Reflection-padded conv (optionally after a ×2 nearest upsampling), conditional IN, optional ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, styles: int, relu: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.upsample, self.relu = upsample, relu
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = ConditionalInstanceNorm(c_out, styles)

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.conv(self.pad(x)), blend)
        return F.relu(x) if self.relu else x


class _Residual(nn.Module):
    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.a = _ConvNorm(channels, channels, 3, 1, styles)
        self.b = _ConvNorm(channels, channels, 3, 1, styles, relu=False)

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        return x + self.b(self.a(x, blend), blend)


class StyleNet(nn.Module):
    """Encoder (9×9, two stride-2 3×3), residual blocks, decoder (two upsample-convs, 9×9) → sigmoid."""

    def __init__(self, styles: int, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        if styles < 1:
            raise ValueError("a style network needs at least one style")
        self.styles, self.config = styles, config
        a, b, c = config.widths
        self.layers = nn.ModuleList([
            _ConvNorm(3, a, 9, 1, styles), _ConvNorm(a, b, 3, 2, styles), _ConvNorm(b, c, 3, 2, styles),
            *[_Residual(c, styles) for _ in range(config.blocks)],
            _ConvNorm(c, b, 3, 1, styles, upsample=True), _ConvNorm(b, a, 3, 1, styles, upsample=True),
        ])
        self.pad = nn.ReflectionPad2d(4)
        self.out = nn.Conv2d(a, 3, 9)

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        """``x`` (N, 3, H, W) in [0, 1]; ``blend`` (N, S) or (S,) weights over the styles."""
        if blend.ndim == 1:
            blend = blend.expand(x.shape[0], -1)
        blend = blend.to(x.dtype)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        y = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        y = y * 2 - 1
        for layer in self.layers:
            y = layer(y, blend)
        y = torch.sigmoid(self.out(self.pad(y)))
        return y[..., :h, :w]


def one_hot(index: int | Tensor, styles: int) -> Tensor:
    """(S,) or (N, S) one-hot blend(s)."""
    return F.one_hot(torch.as_tensor(index), styles).float()


def config_dict(config: NetConfig) -> dict[str, object]:
    return asdict(config) | {"widths": list(config.widths)}
