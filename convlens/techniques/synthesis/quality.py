"""Image similarity for reconstructions: PSNR and SSIM (Wang et al. 2004, 11-px Gaussian window, σ = 1.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] of equal shape."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean structural similarity of (N, C, H, W) or (C, H, W) images in [0, 1], per channel, averaged."""
    a, b = (t.float()[None] if t.ndim == 3 else t.float() for t in (a, b))
    size, sigma = min(11, *a.shape[-2:]), 1.5
    coords = torch.arange(size, dtype=torch.float32, device=a.device) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(a.shape[1], 1, size, size)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, window, groups=a.shape[1])

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a.pow(2)
    var_b = blur(b * b) - mu_b.pow(2)
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a.pow(2) + mu_b.pow(2) + c1) * (var_a + var_b + c2))
    return float(s.mean())
