"""Integrated Gradients: hand-computable cases on tiny models, the quadratures, the baselines, and Captum's
``IntegratedGradients`` with the same rule.

Tolerances come from :mod:`tests.numerics`: a gradient computed two ways (other batch compositions, other
kernels) differs by at most 2δ, δ the absolute network's rounding bound, and a weighted sum of n of them adds
the summation's γ_n relative rounding.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from convlens import registry
from convlens.techniques.attribution.integrated_gradients import (
    IntegratedGradientsParams,
    baseline,
    integrated_gradients,
    quadrature,
)
from tests import numerics
from tests.conftest import TinyCNN

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle", "riemann_right")
CAPTUM_RULES = ("gausslegendre", "riemann_left", "riemann_middle", "riemann_right")


class Square(nn.Module):
    """F(x) = (w·x)², w·x a linear map without bias: along the path from 0, F(αx) = α²(w·x)² and the
    integrand of Σ attributions is 2α(w·x)², linear in α."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.linear = nn.Linear(3 * 4 * 4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) ** 2


def linear_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def small_input(n: int = 2, seed: int = 4) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 3, 4, 4)


def test_declared_as_an_attribution_technique_with_its_outputs() -> None:
    spec = registry.get("integrated_gradients")
    described = spec.describe()
    assert spec.family == "attribution" and spec.route == "integrated_gradients"
    params = {p["name"]: p for p in described["params"]}
    assert params["baseline"]["choices"] == ["black", "blurred", "uniform"]
    # blurred by default: on the built-in shapes a black path start credits the background (a held-out image's map
    # put 1.16x its share on the object with black, 1.70x with blurred; tests/core/test_explain.py asks > 1.2x)
    assert params["baseline"]["default"] == "blurred"
    assert params["rule"]["choices"] == list(RULES) and params["rule"]["default"] == "gausslegendre"
    outputs = {(o["section"], o["name"]): o for o in described["outputs"]}
    assert ("images", "attributions") in outputs
    assert "F(x) − F(baseline)" in outputs["scalars", "completeness_error"]["caption"]


@pytest.mark.parametrize("rule", RULES)
def test_a_linear_model_gets_its_weights_times_the_difference(rule: str) -> None:
    """IG of F = Wx + b is (x − x') ⊙ W_t for any quadrature whose weights sum to 1; completeness is exact."""
    model, x = linear_model(), small_input()
    params = IntegratedGradientsParams(baseline="black", rule=rule, steps=7, batch_size=5)
    a = integrated_gradients(model, x, torch.tensor([0, 3]), params)
    base = baseline(x, params, None)
    assert torch.equal(base, torch.zeros_like(x))  # black without a normaliser: the input's zero
    expected = x * model[1].weight.detach()[[0, 3]].view(2, 3, 4, 4)
    terms = expected.abs()
    torch.testing.assert_close(a.signed["attributions"], expected, atol=float(numerics.gamma(2 * 7)
                                                                               * terms.max()), rtol=0)
    change = (a.score - a.scalars["baseline_score"]).abs()
    bound = numerics.gamma(2 * (7 + terms[0].numel())) * terms.flatten(1).sum(1) / change
    assert bool((a.scalars["completeness_error"] <= bound).all()), (a.scalars["completeness_error"], bound)


@pytest.mark.parametrize(("rule", "error"), [("riemann_left", 1 / 8), ("riemann_right", 1 / 8), ("riemann_middle", 0),
                                             ("riemann_trapezoid", 0), ("gausslegendre", 0)])
def test_the_completeness_error_of_a_quadratic_by_hand(rule: str, error: float) -> None:
    """Σ attributions = 2(w·x)² Σ_k w_k α_k and F(x) − F(0) = (w·x)²: a left or right Riemann sum of n = 8 points
    gives Σ w_k α_k = (n ∓ 1)/2n, a relative error of exactly 1/n; middle, trapezoid and Gauss–Legendre
    integrate the linear integrand exactly."""
    x = small_input(1)
    a = integrated_gradients(Square(), x, 0, IntegratedGradientsParams(baseline="black", rule=rule, steps=8))
    tolerance = numerics.gamma(4 * (8 + x.numel()))
    assert abs(float(a.scalars["completeness_error"][0]) - error) <= tolerance


def test_quadratures_by_hand() -> None:
    nodes, weights = quadrature("gausslegendre", 4)  # exact for polynomials up to degree 2n − 1 = 7
    for p in range(8):
        assert abs(sum(w * a ** p for a, w in zip(nodes, weights, strict=True)) - 1 / (p + 1)) < 1e-14
    assert quadrature("riemann_left", 4) == ([0, 0.25, 0.5, 0.75], [0.25] * 4)
    assert quadrature("riemann_right", 4) == ([0.25, 0.5, 0.75, 1], [0.25] * 4)
    assert quadrature("riemann_middle", 4) == ([0.125, 0.375, 0.625, 0.875], [0.25] * 4)
    assert quadrature("riemann_trapezoid", 5) == ([0, 0.25, 0.5, 0.75, 1], [0.125, 0.25, 0.25, 0.25, 0.125])


def test_more_steps_shrink_the_completeness_error(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    error = {steps: float(integrated_gradients(tiny_cnn, tiny_input, None, IntegratedGradientsParams(
        baseline="black", steps=steps, batch_size=64)).scalars["completeness_error"].mean()) for steps in (4, 128)}
    assert error[128] < error[4] / 4, error


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 0.5) / 0.25


def test_baselines(tiny_input: torch.Tensor) -> None:
    black = baseline(tiny_input, IntegratedGradientsParams(baseline="black"), to_input)
    assert torch.equal(black, torch.full_like(tiny_input, -2.0))  # pixel 0 through the normalisation
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(baseline(flat, IntegratedGradientsParams(baseline="blurred"), to_input), flat)
    draw = lambda seed, x: baseline(x, IntegratedGradientsParams(baseline="uniform", seed=seed),  # noqa: E731
                                    to_input)
    uniform = draw(1, tiny_input)
    assert float(uniform.min()) >= -2.0 and float(uniform.max()) <= 2.0 and float(uniform.std()) > 0.5
    assert torch.equal(uniform, draw(1, tiny_input)) and not torch.equal(uniform, draw(2, tiny_input))
    assert torch.equal(uniform[1:], draw(1, tiny_input[1:]))  # the draw an image would get alone
    bare = baseline(tiny_input, IntegratedGradientsParams(baseline="uniform"), None)  # the image's own range
    assert bool((bare.flatten(1).amin(1) >= tiny_input.flatten(1).amin(1)).all())
    assert bool((bare.flatten(1).amax(1) <= tiny_input.flatten(1).amax(1)).all())


def test_a_blurred_flat_image_has_nothing_to_attribute(tiny_cnn: TinyCNN) -> None:
    """A flat image is its own blur, up to the blur's rounding (two passes of an 11-tap kernel at σ = 1.6 px):
    |x − x'| ≤ γ_24 |x|, so every attribution (x − x') × gradient stays below γ_24 |x| |gradient|."""
    flat = torch.full((1, 3, 16, 16), 0.3)
    a = integrated_gradients(tiny_cnn, flat, None, IntegratedGradientsParams(baseline="blurred"))
    assert a.gradient is not None and float(a.gradient.abs().max()) > 0
    tolerance = numerics.gamma(2 * 11 + 2) * 0.3 * a.gradient.abs()
    assert bool((a.signed["attributions"].abs() <= tolerance).all())


@pytest.mark.parametrize(("kind", "normaliser", "baseline_rows"), [
    ("black", None, 1), ("uniform", to_input, 1), ("uniform", None, 2), ("blurred", to_input, 2)])
def test_rows_run_through_the_model(kind: str, normaliser: Any, baseline_rows: int, tiny_cnn: TinyCNN,
                                    tiny_input: torch.Tensor) -> None:
    """One forward of the images and their baselines — once when the images share it (black; pixel noise, not
    noise over each image's own range) — then images × steps path points, in passes of at most ``batch_size``;
    F(baseline) is each image's own."""
    sizes: list[int] = []
    handle = tiny_cnn.register_forward_hook(lambda _m, args, _out: sizes.append(len(args[0])))
    try:
        a = integrated_gradients(tiny_cnn, tiny_input, None, IntegratedGradientsParams(baseline=kind, steps=5,
                                                                                        batch_size=4),
                                 to_input=normaliser)
    finally:
        handle.remove()
    assert sizes == [2 + baseline_rows, 4, 4, 2]
    base = baseline(tiny_input, IntegratedGradientsParams(baseline=kind), normaliser)
    expected = tiny_cnn(base).gather(1, a.target[:, None])[:, 0].detach()
    torch.testing.assert_close(a.scalars["baseline_score"], expected)


def test_progress_counts_the_path_points(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    seen: list[tuple[int, int]] = []
    integrated_gradients(tiny_cnn, tiny_input, None, IntegratedGradientsParams(baseline="black", steps=5, batch_size=4),
                         progress=lambda step, total, _preview: seen.append((step, total)))
    assert seen == [(4, 10), (8, 10), (10, 10)]


def captum_ig(model: nn.Module, x: torch.Tensor, base: torch.Tensor, target: torch.Tensor, steps: int,
              rule: str) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notice that it sets requires_grad on the input
        return IntegratedGradients(model).attribute(x, baselines=base, target=target, n_steps=steps, method=rule,
                                                    internal_batch_size=2 * 3)


def captum_tolerance(model: nn.Module, x: torch.Tensor, base: torch.Tensor, steps: int) -> torch.Tensor:
    """|x − x'| × (2δ + 2γ_n G): each gradient within 2δ of Captum's, G ≥ |gradient| the absolute network's
    gradient (δ / γ_L), the weighted sums of n gradients each within γ_n."""
    delta = numerics.input_gradient_error(model, x)
    absolute = delta / numerics.gamma(numerics.accumulation_length(model, x))
    return (x - base).abs() * (2 * delta + 2 * numerics.gamma(steps) * absolute)


@pytest.mark.parametrize("rule", CAPTUM_RULES)
@pytest.mark.parametrize("kind", ["black", "blurred", "uniform"])
def test_matches_captum_with_the_same_rule(rule: str, kind: str, tiny_cnn: TinyCNN,
                                           tiny_input: torch.Tensor) -> None:
    steps = 20
    params = IntegratedGradientsParams(baseline=kind, rule=rule, steps=steps, batch_size=7)
    ours = integrated_gradients(tiny_cnn, tiny_input, None, params, to_input=to_input)
    base = baseline(tiny_input, params, to_input)
    theirs = captum_ig(tiny_cnn, tiny_input, base, ours.target, steps, rule)
    diff = (ours.signed["attributions"] - theirs).abs()
    assert bool((diff <= captum_tolerance(tiny_cnn, tiny_input, base, steps)).all())
    assert float(diff.max() / theirs.abs().max()) <= 1e-4
    # the comparison can fail: one step fewer is far off
    assert float((captum_ig(tiny_cnn, tiny_input, base, ours.target, steps - 1, rule) - theirs).abs().max()
                 / theirs.abs().max()) > 1e-3


def test_trapezoid_is_captums_rescaled(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    """Captum's ``riemann_trapezoid`` puts its n nodes at 0, 1/(n−1), …, 1 but weighs them 1/n (ends halved), so
    its weights sum to (n−1)/n; ConvLens weighs them 1/(n−1), a proper trapezoid rule: n/(n−1) × Captum's."""
    steps = 10
    params = IntegratedGradientsParams(rule="riemann_trapezoid", steps=steps)
    ours = integrated_gradients(tiny_cnn, tiny_input, None, params)
    theirs = captum_ig(tiny_cnn, tiny_input, baseline(tiny_input, params, None), ours.target, steps,
                       "riemann_trapezoid") * steps / (steps - 1)
    tolerance = captum_tolerance(tiny_cnn, tiny_input, torch.zeros_like(tiny_input), steps) * 2
    assert bool(((ours.signed["attributions"] - theirs).abs() <= tolerance).all())

