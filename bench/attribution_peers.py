"""Registered attribution techniques that ``bench/attribution.py`` times against a Captum peer, besides its three
hand-compared ones (saliency, guided backprop, Grad-CAM).

Keyed by registry name: the techniques come from :func:`convlens.registry.of_family`, their titles and params
from their declarations; what a technique needs here is only what the registry cannot know — the peer's call,
the agreement check and the settings both sides run with. Both sides run the same number of images per
forward and backward pass (ours: ``batch_size`` rows; Captum: that many rows split into its per-image chunk).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from convlens import registry

ROWS_PER_PASS = {1: 16}  # images per forward + backward pass by the batch size of a case; 64 for larger


@dataclass(frozen=True)
class Pair:
    ours: Callable[[], object]
    captum: Callable[[], object]
    check: Callable[[], list[tuple[str, float]]]  # (what was compared, max relative difference)


@dataclass(frozen=True)
class Peer:
    settings: dict[str, dict[str, Any]]  # case ("resnet50 b1", ...) → our params (both sides run them)
    pair: Callable[[nn.Module, Tensor, Tensor, Any], Pair]
    includes: str  # what each call includes, for the report


def rel_err(a: Tensor, b: Tensor) -> float:
    scale, diff = float(b.abs().max()), float((a - b).abs().max())
    return (0.0 if diff == 0.0 else float("inf")) if scale == 0.0 else diff / scale


def _quiet(call: Callable[[], Tensor]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notices: it sets requires_grad, it hooks the ReLUs
        return call()


def smoothgrad_pair(net: nn.Module, x: Tensor, target: Tensor, params: Any) -> Pair:
    from captum.attr import GuidedBackprop, NoiseTunnel, Saliency

    run = registry.get("smoothgrad").run
    tunnel = NoiseTunnel(Saliency(net) if params.gradient == "vanilla" else GuidedBackprop(net))
    extra = {"abs": False} if params.gradient == "vanilla" else {}
    sigma = params.noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))

    def captum(xs: Tensor = x, ts: Tensor = target, stdev: float = float(sigma.mean())) -> Tensor:
        return _quiet(lambda: tunnel.attribute(xs, nt_type="smoothgrad", nt_samples=params.samples,
                                               nt_samples_batch_size=max(1, params.batch_size // len(xs)),
                                               stdevs=stdev, target=ts, **extra))

    def check() -> list[tuple[str, float]]:
        """Image by image (Captum takes one σ per call), Captum's global generator seeded as ours: the same
        noise (C·H·W a multiple of 16, see tests/core/test_smoothgrad.py)."""
        ours = run(net, x, target, params).signed["gradient"]
        worst = 0.0
        for i in range(len(x)):
            torch.manual_seed(params.seed)
            theirs = captum(x[i:i + 1], target[i:i + 1], float(sigma[i]))
            worst = max(worst, rel_err(ours[i:i + 1], theirs))
        return [(f"SmoothGrad ({params.gradient}, {params.samples} samples) mean gradient vs Captum "
                 "NoiseTunnel(Saliency(abs=False)) on the same noise", worst)]

    return Pair(lambda: run(net, x, target, params), captum, check)


def ig_pair(net: nn.Module, x: Tensor, target: Tensor, params: Any) -> Pair:
    from captum.attr import IntegratedGradients

    from convlens.techniques.attribution.integrated_gradients import baseline

    run = registry.get("integrated_gradients").run
    ig = IntegratedGradients(net)
    base = baseline(x, params, None)

    def captum() -> Tensor:
        return _quiet(lambda: ig.attribute(x, baselines=base, target=target, n_steps=params.steps,
                                           method=params.rule, internal_batch_size=params.batch_size))

    def check() -> list[tuple[str, float]]:
        ours = run(net, x, target, params).signed["attributions"]
        return [(f"Integrated Gradients ({params.rule}, {params.steps} steps, {params.baseline} baseline) vs "
                 "Captum IntegratedGradients, same rule", rel_err(ours, captum()))]

    return Pair(lambda: run(net, x, target, params), captum, check)


PEERS: dict[str, Peer] = {
    "smoothgrad": Peer(
        {"resnet50 b1": {"samples": 50}, "resnet50 b16": {"samples": 16}, "builtin b1": {"samples": 50},
         "builtin b16": {"samples": 50}}, smoothgrad_pair,
        "SmoothGrad: ConvLens `smoothgrad` (noise level 0.15 of each image's range, vanilla gradient; the clean"
        " forward for the logits, the noisy copies in passes of `batch_size` rows, the map) vs Captum"
        " `NoiseTunnel(Saliency(net)).attribute(x, nt_type=\"smoothgrad\", nt_samples=n,"
        " nt_samples_batch_size=rows / N, stdevs=σ, target=t, abs=False)`."),
    "integrated_gradients": Peer(
        {case: {"steps": 16 if case == "resnet50 b16" else 32, "baseline": "black"}
         for case in ("resnet50 b1", "resnet50 b16", "builtin b1", "builtin b16")}, ig_pair,
        "Integrated Gradients: ConvLens `integrated_gradients` (black baseline = 0 in the model's input space,"
        " Gauss–Legendre; one forward of x and the baseline (shared by the images: one row), the path in passes"
        " of `batch_size` rows, the map, the completeness error) vs Captum"
        " `IntegratedGradients(net).attribute(x, baselines=0, target=t, n_steps=n, method=\"gausslegendre\","
        " internal_batch_size=rows)`."),
}


def names() -> list[str]:
    """The registered attribution techniques with a peer here, in the registry's order."""
    return [s.name for s in registry.of_family("attribution") if s.name in PEERS]


def title(name: str) -> str:
    return registry.get(name).title


def pair(name: str, case: str, net: nn.Module, x: Tensor, target: Tensor) -> Pair:
    spec, peer = registry.get(name), PEERS[name]
    params = replace(spec.params(), **peer.settings[case], batch_size=ROWS_PER_PASS.get(len(x), 64))
    return peer.pair(net, x, target, params)
