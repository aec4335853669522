"""SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg 2017, "SmoothGrad: removing noise by adding noise", §3).

The gradient map averaged over noisy copies of the image: M̂(x) = 1/n Σ_k ∂S_c/∂x (x + ε_k), ε_k ~ N(0, σ²),
σ = noise level × (max − min) of the image. The noisy copies of all images run in chunks of ``batch_size``
through one forward and one backward pass each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convlens.hooks import guided_relu
from convlens.images import Normalizer
from convlens.outputs import Image, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Attribution, Progress
from convlens.techniques.attribution.common import Target, check_input, model_device, resolve_target, unit_scale


@dataclass(frozen=True)
class SmoothGradParams:
    """``noise_level``: σ of the Gaussian noise as a fraction of each image's value range, σ = noise_level ×
    (max − min) (the paper finds 10–20 % best); ``samples``: noisy copies averaged; ``gradient``: the gradient
    that is smoothed, ``vanilla`` (Simonyan et al. 2014) or ``guided`` backprop (Springenberg et al. 2015);
    ``batch_size``: noisy copies per forward and backward pass; ``seed``: the noise (every image of a request
    gets the draw it would get alone)."""

    noise_level: float = bounded(0.15, 0.0, 1.0)
    samples: int = bounded(50, 1, 200)
    gradient: Literal["vanilla", "guided"] = "vanilla"
    batch_size: int = bounded(16, 1, 256)
    seed: int = seed_field()


@technique(name="smoothgrad", title="SmoothGrad", family="attribution", params=SmoothGradParams, order=24,
           reference="Smilkov et al. 2017",
           outputs=(Scalar("score", "the explained class's score (its logit)"),
                    Image("gradient", "signed gradient averaged over the noisy copies (grey = 0)", kind="map"),
                    Scalar("noise_sigma", "σ of the noise (noise level × the image's value range)")))
def smoothgrad(
    model: nn.Module, x: Tensor, target: Target = None, params: SmoothGradParams = SmoothGradParams(),
    progress: Progress | None = None, to_input: Normalizer | None = None,
) -> Attribution:
    """map = max_c |mean gradient_c| over colour channels, scaled to [0, 1] per image (as vanilla saliency,
    on the averaged gradient); ``signed["gradient"]`` is the averaged gradient itself."""
    check_input(x)
    x = x.detach().to(model_device(model))
    with torch.no_grad():
        logits = model(x)
    t = resolve_target(logits, target)
    sigma = params.noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    mean = noisy_gradient_sum(model, x, t, sigma, params, progress) / params.samples
    raw = mean.abs().amax(dim=1)
    return Attribution(unit_scale(raw), t, logits.gather(1, t[:, None])[:, 0], logits, gradient=mean, raw=raw,
                       objective="class score", scalars={"noise_sigma": sigma}, signed={"gradient": mean})


def noisy_gradient_sum(model: nn.Module, x: Tensor, t: Tensor, sigma: Tensor, params: SmoothGradParams,
                       progress: Progress | None) -> Tensor:
    """Σ_k ∂S_t/∂x at x + σ·ε_k for each image, the copies of all images in chunks of ``params.batch_size``.

    Image i's noise comes from its own generator seeded with ``params.seed``, drawn in sample order, so its
    map does not depend on the other images of the batch."""
    n, s = len(x), params.samples
    generators = [torch.Generator(device=x.device).manual_seed(params.seed) for _ in range(n)]
    total = torch.zeros_like(x)
    for start in range(0, n * s, params.batch_size):
        stop = min(start + params.batch_size, n * s)
        images = range(start // s, (stop - 1) // s + 1)
        counts = [min(stop, (i + 1) * s) - max(start, i * s) for i in images]
        with torch.no_grad():
            noisy = torch.cat([x[i] + _noise(generators[i], c, x) * sigma[i] for i, c in zip(images, counts,
                                                                                              strict=True)])
        rows = torch.tensor([i for i, c in zip(images, counts, strict=True) for _ in range(c)], device=x.device)
        total.index_add_(0, rows, _gradients(model, noisy.requires_grad_(True), t[rows], params.gradient))
        if progress is not None:
            progress(stop, n * s, None)
    return total


def _noise(generator: torch.Generator, count: int, x: Tensor) -> Tensor:
    """``count`` standard normal draws shaped like one image of ``x``."""
    return torch.randn((count, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)


def _gradients(model: nn.Module, rows: Tensor, targets: Tensor, kind: str) -> Tensor:
    """∂S_target/∂row for every row, in one forward and one backward pass."""
    with torch.enable_grad(), guided_relu(model) if kind == "guided" else contextlib.nullcontext():
        score = model(rows).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(score, rows)
    return grad
