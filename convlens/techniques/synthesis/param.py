"""Image parameterisations for the render loop: what the optimiser changes, and how that becomes an image.

``PixelImage``   the pixels themselves, projected back into [0, 1] after every step.
``FourierImage`` a 1/f-scaled spectrum with decorrelated colour squashed by a sigmoid (Olah et al. 2017,
                 "Feature Visualization"): high frequencies are damped, so gradient ascent makes
                 structures instead of high-frequency noise.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

# Square root of the colour covariance of natural images (ImageNet), as the Feature Visualization
# article publishes it; its columns decorrelate the three channels.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class ImageParam(nn.Module, ABC):
    """``image()`` → (N, 3, H, W) in [0, 1]; ``project()`` runs after each optimiser step."""

    @abstractmethod
    def image(self) -> Tensor: ...

    def project(self) -> None:
        """Bring the parameters back into their valid set (a no-op for unconstrained ones)."""


class PixelImage(ImageParam):
    def __init__(self, init: Tensor) -> None:
        super().__init__()
        self.pixels = nn.Parameter(init.detach().clone().clamp(0, 1))

    def image(self) -> Tensor:
        return self.pixels

    @torch.no_grad()
    def project(self) -> None:
        self.pixels.clamp_(0, 1)


class FourierImage(ImageParam):
    """(N, 3, H, W) from a learned spectrum; ``decay`` is the 1/f^decay power."""

    scale: Tensor
    color: Tensor

    def __init__(self, n: int, size: tuple[int, int], generator: torch.Generator, device: torch.device,
                 decay: float = 1.0, init_std: float = 0.01) -> None:
        super().__init__()
        h, w = size
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freq = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.maximum(freq, torch.tensor(1.0 / max(h, w))) ** decay
        self.register_buffer("scale", (scale * math.sqrt(h * w))[None, None].to(device))
        spectrum = torch.randn((n, 3, h, w // 2 + 1, 2), generator=generator) * init_std
        self.spectrum = nn.Parameter(spectrum.to(device))
        self.size = size
        self.register_buffer("color", _COLOR.to(device))

    def image(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        decorrelated = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0
        rgb = torch.einsum("nchw,dc->ndhw", decorrelated, self.color)
        return torch.sigmoid(rgb)


PARAMETERISATIONS = ("pixels", "fourier")


def make_param(kind: str, n: int, size: tuple[int, int], generator: torch.Generator, device: torch.device,
               init: Tensor | None = None, noise: float = 0.1) -> ImageParam:
    """``pixels`` start from ``init`` (or grey plus seeded noise); ``fourier`` from a small random spectrum."""
    if kind == "fourier":
        return FourierImage(n, size, generator, device)
    if kind != "pixels":
        raise ValueError(f"unknown parameterisation {kind!r}; known: {', '.join(PARAMETERISATIONS)}")
    if init is None:
        init = 0.5 + noise * torch.randn((n, 3, *size), generator=generator)
    return PixelImage(init.to(device))
