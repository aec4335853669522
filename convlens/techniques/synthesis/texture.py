"""Texture synthesis by matching Gram matrices over several layers of a perceptual network (Gatys, Ecker &
Bethge 2015), and its non-neural baseline: Efros & Leung 1999's non-parametric sampling, which grows the
texture pixel by pixel from the source pixels whose neighbourhoods match best."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from convlens.hooks import capture
from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Cancelled, Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_SYNTHESIS_SIZE, SchemaError
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import STEPS, Inputs, fit, loop_scalars, synthesis, term
from convlens.techniques.synthesis.loop import OptimizerFactory, optimize
from convlens.techniques.synthesis.param import make_param
from convlens.techniques.synthesis.perceptual import Network, Perceptual, perceptual
from convlens.techniques.synthesis.quasi_newton import LBFGSStep

DEFAULT_LR = {"lbfgs": 0.3, "adam": 0.03}  # a step size that suits one optimiser wrecks the other


@dataclass(frozen=True)
class TextureParams:
    """``source_size``: the source texture's longer side; ``size``: the side of the square result.
    ``optimizer``: ``lbfgs`` (Gatys et al.'s, :mod:`.quasi_newton`) or ``adam``; on the shipped images 50 L-BFGS
    steps reach about the Gram distance of 300 Adam steps (the former default; within 2×, lower on 4 of 7) in a
    sixth of the time. ``lr``: L-BFGS's largest change of one pixel per step (0.1 stalls on dark or binary
    sources), or Adam's learning rate; unset, each optimiser's own (:data:`DEFAULT_LR`)."""

    size: int = bounded(128, 16, MAX_SYNTHESIS_SIZE)
    source_size: int = bounded(128, 16, MAX_SYNTHESIS_SIZE)
    steps: int = bounded(50, 1, MAX_STEPS)
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float | None = bounded(None, 1e-4, 1.0)
    network: Network = "auto"
    parameterisation: Literal["pixels", "fourier"] = "pixels"
    seed: int = seed_field()


@dataclass(frozen=True)
class EfrosLeungParams:
    """``window``: the odd neighbourhood side; ``error``: candidates within (1 + error) of the best match."""

    size: int = bounded(64, 8, 128)
    source_size: int = bounded(64, 8, 128)
    window: int = bounded(11, 3, 25)
    error: float = bounded(0.1, 0.0, 1.0)
    seed: int = seed_field()


def grams(net: Perceptual, image: Tensor, layers: tuple[str, ...]) -> dict[str, Tensor]:
    """Gram matrices (1, C, C) of ``image`` (1, 3, H, W) in [0, 1] at ``layers``."""
    with torch.no_grad(), capture(net.net, layers, detach=True) as captured:
        net.net(net.to_input(image))
    return {layer: obj.gram(captured[layer]) for layer in layers}


def lbfgs(parameterisation: str) -> OptimizerFactory:
    """L-BFGS, kept inside [0, 1] when it moves the pixels themselves."""
    bounds = (0.0, 1.0) if parameterisation == "pixels" else None
    return lambda parameters, lr: LBFGSStep(parameters, lr, bounds=bounds)


@technique(name="texture", page="texture", title="Texture synthesis (Gram)", family="synthesis", params=TextureParams,
           inputs=("image",), order=60, reference="Gatys, Ecker & Bethge 2015", outputs=(
               Image("result", "{seconds:.1f} s · Gram loss −{gram_reduction:.1%}", role="primary"),
               Image("source", "source texture"),
               Label("network", "the network the Gram matrices were measured with"),
               STEPS, *term("gram_distance", "Gram-matrix distance to the source"),
               Scalar("initial_gram_distance", "Gram-matrix distance to the source at the first step"),
               Scalar("gram_reduction", "share of the Gram-matrix distance removed")))
def texture(loaded: LoadedModel, inputs: Inputs, target: int | None, params: TextureParams = TextureParams(),
            progress: Progress | None = None) -> Synthesis:
    """``result`` a new texture of ``size``² whose Gram matrices match the source's; ``source`` the source."""
    net = perceptual(params.network, loaded)
    source = fit(inputs["image"], params.source_size).to(net.device)
    targets = grams(net, source, net.style_layers)
    generator = torch.Generator().manual_seed(params.seed)
    param = make_param(params.parameterisation, 1, (params.size, params.size), generator, net.device, noise=0.1)
    lr = DEFAULT_LR[params.optimizer] if params.lr is None else params.lr
    run = optimize(net.net, param, obj.gram_distance(targets), params.steps, lr=lr, to_input=net.to_input,
                   seed=params.seed, progress=progress,
                   optimizer=lbfgs(params.parameterisation) if params.optimizer == "lbfgs" else params.optimizer)
    history = run.history.get("gram_distance", [0.0])
    return synthesis({"result": run.image, "source": source}, run.history,
                     {**loop_scalars(run), "initial_gram_distance": history[0],
                      "gram_reduction": 1 - history[-1] / max(history[0], 1e-12)},
                     {"network": net.description})


@technique(name="efros_leung", title="Texture synthesis (Efros–Leung)", family="synthesis", params=EfrosLeungParams,
           page="texture",
           inputs=("image",), endpoint="texture", order=61, reference="Efros & Leung 1999", outputs=(
               Image("result", "{seconds:.1f} s", role="primary"), Image("source", "source texture"),
               Label("network", "what measured the texture (no network: pixel neighbourhoods)"),
               Scalar("steps", "pixels grown", integer=True),
               Scalar("window", "side of the matched neighbourhood", "px", integer=True)))
def efros_leung(loaded: LoadedModel, inputs: Inputs, target: int | None,
                params: EfrosLeungParams = EfrosLeungParams(), progress: Progress | None = None) -> Synthesis:
    """Grow a ``size``² texture from a 3×3 seed, frontier pixel by frontier pixel (those with the most known
    neighbours first), each copied from a random source pixel among the best Gaussian-weighted SSD matches."""
    started = time.perf_counter()
    source = fit(inputs["image"], params.source_size)[0].cpu()
    window = params.window + 1 - params.window % 2  # what grow() uses: the next odd side
    if window > min(source.shape[-2:]):
        raise SchemaError("params.window", f"a {window}-pixel window does not fit in the "
                                           f"{source.shape[-1]}×{source.shape[-2]} source (params.source_size "
                                           f"{params.source_size}); use a smaller window or a larger source_size")
    reached = [0, 0.0]  # steps reported, 1.0 once a cancel stopped it

    def watched(step: int, total: int, preview: Tensor | None) -> None:
        reached[0] = step
        try:
            if progress is not None:
                progress(step, total, preview)
        except Cancelled:
            reached[1] = 1.0
            raise

    out = grow(source, params.size, params.window, params.error, params.seed, watched)
    return synthesis({"result": out, "source": source}, {},
                     {"seconds": round(time.perf_counter() - started, 4), "window": float(params.window),
                      "cancelled": reached[1], "steps": float(reached[0])},
                     {"network": "none (non-parametric sampling)"})


def grow(source: Tensor, size: int, window: int, error: float, seed: int, progress: Progress | None = None
         ) -> Tensor:
    """(3, h, w) source → (3, size, size) texture."""
    window += 1 - window % 2
    half = window // 2
    generator = torch.Generator().manual_seed(seed)
    patches = F.unfold(source[None], window)[0].T  # (P, 3·w²) every full window of the source
    centres = patches.view(-1, 3, window, window)[:, :, half, half]  # (P, 3)
    sq = patches.pow(2)
    coords = torch.arange(window, dtype=torch.float32) - half
    gauss = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * (window / 6.4) ** 2))
    gauss = gauss.expand(3, window, window).reshape(-1)

    canvas = torch.zeros(3, size + 2 * half, size + 2 * half)
    known = torch.zeros(size + 2 * half, size + 2 * half, dtype=torch.bool)
    sy = int(torch.randint(0, source.shape[1] - 3 + 1, (1,), generator=generator))
    sx = int(torch.randint(0, source.shape[2] - 3 + 1, (1,), generator=generator))
    c = half + size // 2 - 1
    canvas[:, c:c + 3, c:c + 3] = source[:, sy:sy + 3, sx:sx + 3]
    known[c:c + 3, c:c + 3] = True
    inside = torch.zeros_like(known)
    inside[half:half + size, half:half + size] = True
    total = size * size
    while True:
        filled = int(known[inside].sum())
        if filled >= total:
            break
        neighbours = F.conv2d(known[None, None].float(), torch.ones(1, 1, 3, 3), padding=1)[0, 0]
        frontier = inside & ~known & (neighbours > 0)
        ys, xs = torch.nonzero(frontier, as_tuple=True)
        order = torch.argsort(-neighbours[ys, xs], stable=True)[:max(1, size)]  # the best-anchored first
        ys, xs = ys[order], xs[order]
        windows = F.unfold(canvas[None], window)[0].T.view(size, size, -1)[ys - half, xs - half]  # (F, 3·w²)
        masks = F.unfold(known[None, None].float(), window)[0].T.view(size, size, -1)[ys - half, xs - half]
        masks = masks.repeat(1, 3) * gauss
        norm = masks.sum(1, keepdim=True).clamp_min(1e-8)
        # Σ m·(p − n)² = Σ m·p² − 2 Σ (m·n)·p + Σ m·n²  for every frontier pixel against every source window
        ssd = (masks @ sq.T - 2 * (masks * windows) @ patches.T + (masks * windows.pow(2)).sum(1, keepdim=True)) / norm
        best = ssd.min(dim=1, keepdim=True).values
        candidates = ssd <= best * (1 + error) + 1e-6
        picks = torch.multinomial(candidates.float(), 1, generator=generator)[:, 0]
        canvas[:, ys, xs] = centres[picks].T
        known[ys, xs] = True
        if progress is not None:
            try:
                progress(filled + len(ys), total, canvas[:, half:half + size, half:half + size].clone())
            except Cancelled:
                break
    return canvas[:, half:half + size, half:half + size]
