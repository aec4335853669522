"""SmoothGrad: hand-computable cases on tiny models, and Captum's ``NoiseTunnel`` on the same noise.

Tolerances come from :mod:`tests.numerics`: two computations of one input gradient (other batch
compositions, other kernels) each lie within δ of exact (the absolute network's bound), and a mean of n of
them adds the summation's γ_n relative rounding.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from convlens import registry
from convlens.techniques.attribution.guided import guided_backprop
from convlens.techniques.attribution.saliency import saliency
from convlens.techniques.attribution.smoothgrad import SmoothGradParams, smoothgrad
from tests import numerics
from tests.conftest import TinyCNN


def linear_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def gradient_bound(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """δ: the rounding bound of one input gradient; the absolute network's gradient does not depend on x for
    networks of convolutions, linear maps, ReLUs and pools, so it holds at every noisy copy too."""
    return numerics.input_gradient_error(model, x)


def test_declared_as_an_attribution_technique_with_its_outputs() -> None:
    spec = registry.get("smoothgrad")
    described = spec.describe()
    assert spec.family == "attribution" and spec.route == "smoothgrad"
    assert {p["name"] for p in described["params"]} == {"noise_level", "samples", "gradient", "batch_size", "seed"}
    assert next(p for p in described["params"] if p["name"] == "gradient")["choices"] == ["vanilla", "guided"]
    assert {(o["section"], o["name"]) for o in described["outputs"]} >= {("images", "gradient"),
                                                                         ("scalars", "noise_sigma")}


def test_a_linear_model_has_its_weights_as_gradient_whatever_the_noise() -> None:
    """∂(Wx + b)_t/∂x = W_t at every noisy copy, so the mean is W_t (up to the mean's own rounding)."""
    model = linear_model()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 4, 4)
    a = smoothgrad(model, x, torch.tensor([1, 4]), SmoothGradParams(noise_level=0.5, samples=9, batch_size=4))
    expected = model[1].weight.detach()[[1, 4]].view(2, 3, 4, 4)
    tolerance = numerics.gamma(9) * float(expected.abs().max())
    torch.testing.assert_close(a.signed["gradient"], expected, atol=tolerance, rtol=0)
    torch.testing.assert_close(a.raw, expected.abs().amax(dim=1), atol=tolerance, rtol=0)


@pytest.mark.parametrize(("kind", "plain"), [("vanilla", saliency), ("guided", guided_backprop)])
def test_no_noise_is_the_plain_gradient(kind: str, plain: object, tiny_cnn: TinyCNN,
                                        tiny_input: torch.Tensor) -> None:
    a = smoothgrad(tiny_cnn, tiny_input, None, SmoothGradParams(noise_level=0.0, samples=5, gradient=kind,
                                                                batch_size=3))
    b = plain(tiny_cnn, tiny_input)  # type: ignore[operator]
    assert a.target.tolist() == b.target.tolist()
    torch.testing.assert_close(a.logits, b.logits)
    tolerance = 2 * gradient_bound(tiny_cnn, tiny_input) + numerics.gamma(5) * b.gradient.abs()
    assert bool(((a.signed["gradient"] - b.gradient).abs() <= tolerance).all())
    assert float(a.signed["gradient"].abs().max()) > 100 * float(tolerance.max())  # the check can fail


def test_sigma_is_the_noise_level_times_each_images_range(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    a = smoothgrad(tiny_cnn, tiny_input, None, SmoothGradParams(noise_level=0.2, samples=2))
    ranges = tiny_input.flatten(1).amax(1) - tiny_input.flatten(1).amin(1)
    torch.testing.assert_close(a.scalars["noise_sigma"], 0.2 * ranges)


def test_more_samples_reduce_the_variance_between_seeds(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    """The mean of n independent noisy gradients has 1/n of their variance (σ²/n): 4 → 32 samples divide the
    spread between seeds by about 8; asserted with a wide margin (at least 3)."""
    def spread(samples: int) -> float:
        runs = torch.stack([smoothgrad(tiny_cnn, tiny_input[:1], None, SmoothGradParams(
            noise_level=0.3, samples=samples, seed=seed, batch_size=32)).signed["gradient"] for seed in range(8)])
        return float(runs.var(dim=0).mean())

    few, many = spread(4), spread(32)
    assert many < few / 3, (few, many)


def test_the_seed_fixes_the_draw(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    run = lambda seed, batch: smoothgrad(tiny_cnn, tiny_input, None, SmoothGradParams(  # noqa: E731
        samples=6, seed=seed, batch_size=batch)).signed["gradient"]
    first = run(7, 5)
    tolerance = 2 * gradient_bound(tiny_cnn, tiny_input) + numerics.gamma(6) * first.abs()
    assert bool(((run(7, 4) - first).abs() <= tolerance).all())  # another chunking, the same noise
    assert float((run(8, 5) - first).abs().max()) > 100 * float(tolerance.max())


def test_progress_counts_the_noisy_copies(tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    seen: list[tuple[int, int]] = []
    smoothgrad(tiny_cnn, tiny_input, None, SmoothGradParams(samples=5, batch_size=4),
               progress=lambda step, total, _preview: seen.append((step, total)))
    assert seen == [(4, 10), (8, 10), (10, 10)]


def captum_smoothgrad(model: nn.Module, x: torch.Tensor, target: int, sigma: float, samples: int, kind: str,
                      seed: int, chunk: int) -> torch.Tensor:
    """Captum's SmoothGrad of one image, its noise drawn as ConvLens draws it.

    ``NoiseTunnel`` draws ``torch.normal(0, σ)`` of shape (samples in the chunk, C, H, W) from the global
    generator, chunk after chunk; ATen fills a normal tensor as ``normal_(0, 1)`` times σ, in blocks of 16
    values. ConvLens draws ``randn`` from a generator seeded with ``seed`` per image, times σ, in its own
    chunks. So with the global generator seeded the same and C·H·W a multiple of 16 (every chunk then ends on
    a block boundary), both add the same noise, whatever the chunk sizes."""
    from captum.attr import GuidedBackprop, NoiseTunnel, Saliency

    assert x[0].numel() % 16 == 0
    torch.manual_seed(seed)
    method = NoiseTunnel(Saliency(model) if kind == "vanilla" else GuidedBackprop(model))
    extra = {"abs": False} if kind == "vanilla" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notices: it sets requires_grad, it hooks the ReLUs
        return method.attribute(x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=chunk,
                                stdevs=sigma, target=target, **extra)


@pytest.mark.parametrize("kind", ["vanilla", "guided"])
def test_matches_captum_noise_tunnel_on_the_same_noise(kind: str, tiny_cnn: TinyCNN,
                                                       tiny_input: torch.Tensor) -> None:
    """Averaged maps of ``NoiseTunnel(Saliency(abs=False))`` / ``NoiseTunnel(GuidedBackprop)``, image by image
    (Captum takes one σ per call, ConvLens one per image), in other chunk sizes than ours."""
    samples, seed = 12, 11
    ours = smoothgrad(tiny_cnn, tiny_input, None, SmoothGradParams(noise_level=0.2, samples=samples, gradient=kind,
                                                                   seed=seed, batch_size=7))
    bound = gradient_bound(tiny_cnn, tiny_input)
    for i in range(len(tiny_input)):
        theirs = captum_smoothgrad(tiny_cnn, tiny_input[i:i + 1], int(ours.target[i]),
                                   float(ours.scalars["noise_sigma"][i]), samples, kind, seed, chunk=5)[0]
        mine = ours.signed["gradient"][i]
        tolerance = 2 * bound[i] + 2 * numerics.gamma(samples) * theirs.abs().max()
        assert bool(((mine - theirs).abs() <= tolerance).all())
        assert float((mine - theirs).abs().max() / theirs.abs().max()) <= 1e-4
        # another draw is far outside the tolerance: the comparison sees the noise, not only the model
        other = captum_smoothgrad(tiny_cnn, tiny_input[i:i + 1], int(ours.target[i]),
                                  float(ours.scalars["noise_sigma"][i]), samples, kind, seed + 1, chunk=5)[0]
        assert float((mine - other).abs().max()) > 100 * float(tolerance.max())
