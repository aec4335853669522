"""A small feed-forward transformation network (Johnson, Alahi & Fei-Fei 2016) with instance normalisation
(Ulyanov, Vedaldi & Lempitsky 2016) made conditional on the style (Dumoulin, Shlens & Kudlur 2017): every
normalisation layer holds one scale γ_s and shift β_s per style s, and a blend w (Σ_s w_s = 1) uses
γ = Σ_s w_s γ_s, β = Σ_s w_s β_s — so a one-hot blend is exactly that style's network.

With ``color`` the output logits also pass a per-style 3×3 colour mixing and shift (mixed by the blend like
the norms): the shared 9×9 output convolution alone must serve every style's palette.

    (N, 3, H, W) in [0, 1], blend (N, S) → (N, 3, H, W) in [0, 1]     (H, W multiples of 4 are exact)

:func:`grow` loads a smaller network's weights into a larger one (more residual blocks, a colour head) so
that it computes the same function: new residual blocks start as identities, the colour head as identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class NetConfig:
    """Widths of the three encoder stages, the number of residual blocks, and whether the output has a
    per-style colour head."""

    widths: tuple[int, int, int] = (16, 32, 48)
    blocks: int = 3
    color: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"widths": list(self.widths), "blocks": self.blocks} | ({"color": True} if self.color else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetConfig:
        a, b, c = (int(w) for w in data["widths"])
        return cls(widths=(a, b, c), blocks=int(data["blocks"]), color=bool(data.get("color", False)))


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


class ConditionalColor(nn.Module):
    """Per-style colour mixing ``matrix`` (S, 3, 3) and ``shift`` (S, 3), identity at first, mixed by the blend."""

    def __init__(self, styles: int) -> None:
        super().__init__()
        self.matrix = nn.Parameter(torch.eye(3).repeat(styles, 1, 1))
        self.shift = nn.Parameter(torch.zeros(styles, 3))

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        matrix = torch.einsum("ns,sij->nij", blend, self.matrix)
        return torch.einsum("nij,njhw->nihw", matrix, x) + (blend @ self.shift)[:, :, None, None]


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
        self.color = ConditionalColor(styles) if config.color else None

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
        y = self.out(self.pad(y))
        if self.color is not None:
            y = self.color(y, blend)
        return torch.sigmoid(y)[..., :h, :w]


def grow(model: StyleNet, state: Mapping[str, Tensor], config: NetConfig) -> None:
    """Load ``state`` (the weights of a network of ``config``: the same widths and styles, no more residual
    blocks, a colour head only if ``model`` has one) into ``model`` so that it computes the same function: its
    extra residual blocks follow the old ones with their last norm's scale and shift zero (each an identity);
    a colour head ``state`` lacks stays the identity it starts as."""
    new = model.config
    if config.widths != new.widths or config.blocks > new.blocks or (config.color and not new.color):
        raise ValueError(f"cannot grow network {config.to_dict()} into {new.to_dict()}")
    trunk, extra = 3 + config.blocks, new.blocks - config.blocks

    def renamed(key: str) -> str:
        if not key.startswith("layers."):
            return key
        _, index, rest = key.split(".", 2)
        i = int(index)
        return f"layers.{i if i < trunk else i + extra}.{rest}"

    mapped = {renamed(k): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    fresh = {f"layers.{i}." for i in range(trunk, trunk + extra)}
    if unexpected or any(not (k.startswith(tuple(fresh)) or k.startswith("color.")) for k in missing):
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for i in range(trunk, trunk + extra):
            block = model.layers[i]
            assert isinstance(block, _Residual)
            block.b.norm.gamma.zero_()
            block.b.norm.beta.zero_()


def one_hot(index: int | Tensor, styles: int) -> Tensor:
    """(S,) or (N, S) one-hot blend(s)."""
    return F.one_hot(torch.as_tensor(index), styles).float()
