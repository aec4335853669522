"""Integrated Gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks", §3).

attribution_i = (x_i − x'_i) × ∫₀¹ ∂F/∂x_i (x' + α(x − x')) dα, x' the baseline. The integral is a
quadrature over ``steps`` points of the straight path; the points of all images run in chunks of
``batch_size`` through one forward and one backward pass each. Completeness (Σ attribution = F(x) − F(x'))
holds up to the quadrature's error, which is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from convlens import images
from convlens.images import Normalizer
from convlens.outputs import Image, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Attribution, Progress
from convlens.techniques.attribution.common import Target, check_input, model_device, resolve_target, unit_scale

Rule = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle", "riemann_right"]


@dataclass(frozen=True)
class IntegratedGradientsParams:
    """``baseline``: where the path starts — ``blurred`` by default (a black start credits a plain background
    as much as the object), ``black`` (a black image: pixels 0 through the model's
    normalisation), ``blurred`` (the image blurred with σ = ``blur`` × its shorter side; Sturmfels, Lundberg &
    Lee 2020) or ``uniform`` (uniform noise over the pixel range, drawn from ``seed``). ``steps``: points on
    the path; ``rule``: the quadrature — Gauss–Legendre (Captum's default) or a Riemann sum (``left``,
    ``right``, ``middle`` as Captum's; ``trapezoid`` with nodes 0, 1/(n−1), …, 1 and weights summing to 1).
    ``batch_size``: path points per forward and backward pass."""

    baseline: Literal["black", "blurred", "uniform"] = "blurred"
    steps: int = bounded(32, 2, 300)
    rule: Rule = "gausslegendre"
    blur: float = bounded(0.1, 0.01, 1.0)
    batch_size: int = bounded(16, 1, 256)
    seed: int = seed_field()


COMPLETENESS = ("completeness error {completeness_error:.2%}: |Σ attributions − (F(x) − F(baseline))| / "
                "|F(x) − F(baseline)|, F the explained score (0 for an exact integral)")


@technique(name="integrated_gradients", title="Integrated Gradients", family="attribution",
           params=IntegratedGradientsParams, order=27, reference="Sundararajan, Taly & Yan 2017",
           outputs=(Scalar("score", "the explained class's score (its logit), F(x)"),
                    Image("attributions", "signed attributions: (x − baseline) × the gradient integrated along the "
                          "path (grey = 0)", kind="map"),
                    Scalar("completeness_error", COMPLETENESS),
                    Scalar("baseline_score", "F(baseline): the explained score at the baseline")))
def integrated_gradients(
    model: nn.Module, x: Tensor, target: Target = None,
    params: IntegratedGradientsParams = IntegratedGradientsParams(), progress: Progress | None = None,
    to_input: Normalizer | None = None,
) -> Attribution:
    """map = |Σ_c attribution_c| per pixel, scaled to [0, 1] per image; ``signed["attributions"]`` the
    attributions; ``gradient`` the path-averaged gradient."""
    check_input(x)
    x = x.detach().to(model_device(model))
    base = baseline(x, params, to_input)
    shared = bool((base == base[:1]).all())  # one baseline for every image (black, pixel noise): run it once
    with torch.no_grad():
        both = model(torch.cat([x, base[:1] if shared else base]))
    logits, base_logits = both[:len(x)], both[len(x):].expand(len(x), -1)
    t = resolve_target(logits, target)
    score, base_score = logits.gather(1, t[:, None])[:, 0], base_logits.gather(1, t[:, None])[:, 0]
    mean_grad = path_gradient(model, x, base, t, params, progress)
    attributions = (x - base) * mean_grad
    change = score - base_score
    # relative to |F(x) − F(x')|, but never to less than the rounding of F itself (a baseline as good as x)
    floor = torch.finfo(x.dtype).eps * (score.abs() + base_score.abs())
    error = (attributions.sum(dim=(1, 2, 3)) - change).abs() / change.abs().maximum(floor).clamp_min(
        torch.finfo(x.dtype).tiny)
    raw = attributions.sum(dim=1).abs()
    return Attribution(unit_scale(raw), t, score, logits, gradient=mean_grad, raw=raw, objective="class score",
                       scalars={"completeness_error": error, "baseline_score": base_score},
                       signed={"attributions": attributions})


def baseline(x: Tensor, params: IntegratedGradientsParams, to_input: Normalizer | None) -> Tensor:
    """The path's start x', in the model's input space. Without ``to_input`` (pixels → input), black is 0 and
    uniform noise spans each image's own value range."""
    if params.baseline == "blurred":
        return images.gaussian_blur(x, params.blur * min(x.shape[-2:]))
    n = len(x)
    if params.baseline == "black":
        pixels = torch.zeros_like(x)
    else:  # every image gets the draw it would get alone
        pixels = torch.cat([torch.rand(x.shape[1:], generator=torch.Generator(device=x.device).manual_seed(
            params.seed), device=x.device, dtype=x.dtype)[None] for _ in range(n)])
    if to_input is not None:
        return to_input(pixels).to(x.dtype)
    if params.baseline == "black":
        return pixels
    low, high = x.flatten(1).amin(1).view(-1, 1, 1, 1), x.flatten(1).amax(1).view(-1, 1, 1, 1)
    return low + pixels * (high - low)


def quadrature(rule: str, steps: int) -> tuple[list[float], list[float]]:
    """(nodes α_k in [0, 1], weights w_k) with ∫₀¹ f ≈ Σ_k w_k f(α_k)."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return ((nodes + 1) / 2).tolist(), (weights / 2).tolist()
    if rule == "riemann_trapezoid":
        inner = [1 / (steps - 1)] * (steps - 2)
        return [k / (steps - 1) for k in range(steps)], [0.5 / (steps - 1), *inner, 0.5 / (steps - 1)]
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return [(k + offset) / steps for k in range(steps)], [1 / steps] * steps


def path_gradient(model: nn.Module, x: Tensor, base: Tensor, t: Tensor, params: IntegratedGradientsParams,
                  progress: Progress | None) -> Tensor:
    """Σ_k w_k ∂F_t/∂x (x' + α_k (x − x')) per image, the path points of all images in chunks."""
    n, s = len(x), params.steps
    nodes, weights = quadrature(params.rule, s)
    alpha = torch.tensor(nodes, dtype=x.dtype, device=x.device)
    weight = torch.tensor(weights, dtype=x.dtype, device=x.device)
    total = torch.zeros_like(x)
    for start in range(0, n * s, params.batch_size):
        flat = torch.arange(start, min(start + params.batch_size, n * s), device=x.device)
        image, step = flat // s, flat % s
        a = alpha[step].view(-1, 1, 1, 1)
        with torch.no_grad():
            points = base[image] + a * (x[image] - base[image])
        with torch.enable_grad():
            points.requires_grad_(True)
            score = model(points).gather(1, t[image][:, None]).sum()
            (grad,) = torch.autograd.grad(score, points)
        total.index_add_(0, image, grad * weight[step].view(-1, 1, 1, 1))
        if progress is not None:
            progress(int(flat[-1]) + 1, n * s, None)
    return total
