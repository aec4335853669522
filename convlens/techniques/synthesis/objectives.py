"""Objectives that compose: each term is a loss **to minimise**, one value per image (N,), so a batch can
carry a different objective per image (a gallery of channels, a grid of style weights).

    objective = class_score(3) + 1e-3 * l2_decay() + 0.05 * total_variation()

Ascent objectives (class score, channel, neuron, DeepDream's layer L2) are negated here; the history
records each term with its sign as the user reads it (``class_score`` rises).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Context:
    """What a term may look at during one step."""

    image: Tensor  # (N, 3, H, W) in [0, 1], before the transforms
    activations: Mapping[str, Tensor]  # captured layer outputs of the transformed image
    logits: Tensor | None  # (N, K), None when no term needs the whole forward pass


LossFn = Callable[[Context], Tensor]


@dataclass(frozen=True)
class Term:
    name: str
    fn: LossFn  # Context → (N,) loss to minimise
    weight: float = 1.0
    layers: tuple[str, ...] = ()
    needs_logits: bool = False
    ascent: bool = False  # the history shows −loss (the quantity being raised)


@dataclass(frozen=True)
class Objective:
    terms: tuple[Term, ...] = field(default_factory=tuple)

    def __add__(self, other: Objective) -> Objective:
        return Objective(self.terms + other.terms)

    def __mul__(self, weight: float) -> Objective:
        return Objective(tuple(Term(t.name, t.fn, t.weight * weight, t.layers, t.needs_logits, t.ascent)
                               for t in self.terms))

    __rmul__ = __mul__

    def per_image(self, weights: Tensor) -> Objective:
        """Scale each image's loss by ``weights`` (N,): one batch, one objective weight per image (a one-hot
        weight gives an image its own term)."""
        return Objective(tuple(Term(t.name, _scaled(t.fn, weights), t.weight, t.layers, t.needs_logits, t.ascent)
                               for t in self.terms))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layer for t in self.terms for layer in t.layers))

    @property
    def needs_logits(self) -> bool:
        return any(t.needs_logits for t in self.terms)

    def __call__(self, ctx: Context) -> tuple[Tensor, dict[str, float]]:
        """(N,) total loss per image and each term's batch mean as the user reads it."""
        total: Tensor | None = None
        values: dict[str, float] = {}
        for term in self.terms:
            loss = term.fn(ctx)
            mean = float(loss.detach().mean())
            values[term.name] = -mean if term.ascent else mean
            total = term.weight * loss if total is None else total + term.weight * loss
        if total is None:
            raise ValueError("an objective needs at least one term")
        return total, values


def _scaled(fn: LossFn, weights: Tensor) -> LossFn:
    return lambda ctx: fn(ctx) * weights


def _per_image(t: Tensor) -> Tensor:
    return t.flatten(1).mean(dim=1)


def _index(values: int | Tensor, n: int, device: torch.device) -> Tensor:
    return torch.as_tensor(values, device=device).long().expand(n) if not isinstance(values, Tensor) or \
        values.ndim == 0 else values.to(device).long()


def class_score(target: int | Tensor) -> Objective:
    """Raise the unnormalised class score S_c (Simonyan et al. 2014); ``target`` per image or shared."""

    def fn(ctx: Context) -> Tensor:
        assert ctx.logits is not None
        idx = _index(target, ctx.logits.shape[0], ctx.logits.device)
        return -ctx.logits.gather(1, idx[:, None])[:, 0]

    return Objective((Term("class_score", fn, needs_logits=True, ascent=True),))


def class_probability(target: int | Tensor) -> Objective:
    """Lower the cross-entropy towards ``target`` (the fooling objective)."""

    def fn(ctx: Context) -> Tensor:
        assert ctx.logits is not None
        idx = _index(target, ctx.logits.shape[0], ctx.logits.device)
        return torch.nn.functional.cross_entropy(ctx.logits, idx, reduction="none")

    return Objective((Term("cross_entropy", fn, needs_logits=True),))


def class_margin(target: int | Tensor) -> Objective:
    """Lower the largest other logit minus the target's logit (Carlini & Wagner 2017): negative once the model
    says ``target``; unlike the cross-entropy it does not fade when the target already has most of the mass."""

    def fn(ctx: Context) -> Tensor:
        assert ctx.logits is not None
        idx = _index(target, ctx.logits.shape[0], ctx.logits.device)
        own = torch.nn.functional.one_hot(idx, ctx.logits.shape[1]).bool()
        return ctx.logits.masked_fill(own, float("-inf")).amax(1) - ctx.logits.gather(1, idx[:, None])[:, 0]

    return Objective((Term("margin", fn, needs_logits=True),))


def channel(layer: str, index: int | Tensor) -> Objective:
    """Raise the mean activation of one channel of ``layer`` (Erhan et al. 2009; Chollet §9.4)."""

    def fn(ctx: Context) -> Tensor:
        a = ctx.activations[layer]
        idx = _index(index, a.shape[0], a.device)
        picked = a[torch.arange(a.shape[0], device=a.device), idx]
        return -_per_image(picked)

    return Objective((Term("channel", fn, layers=(layer,), ascent=True),))


def neuron(layer: str, index: int | Tensor, y: int | None = None, x: int | None = None) -> Objective:
    """Raise one unit: channel ``index`` at (y, x) of ``layer`` (the centre when not given)."""

    def fn(ctx: Context) -> Tensor:
        a = ctx.activations[layer]
        idx = _index(index, a.shape[0], a.device)
        if a.ndim == 2:
            return -a[torch.arange(a.shape[0], device=a.device), idx]
        h, w = a.shape[-2:]
        yy = h // 2 if y is None else min(y, h - 1)
        xx = w // 2 if x is None else min(x, w - 1)
        return -a[torch.arange(a.shape[0], device=a.device), idx, yy, xx]

    return Objective((Term("neuron", fn, layers=(layer,), ascent=True),))


def layer_l2(layer: str) -> Objective:
    """DeepDream: raise the mean squared activation of a whole layer (Mordvintsev et al. 2015)."""

    def fn(ctx: Context) -> Tensor:
        return -_per_image(ctx.activations[layer].pow(2))

    return Objective((Term("layer_l2", fn, layers=(layer,), ascent=True),))


def feature_distance(layer: str, target: Tensor, name: str = "feature_distance") -> Objective:
    """‖φ(x) − φ₀‖² / ‖φ₀‖² (Mahendran & Vedaldi 2015); ``target`` (N or 1, ...) is φ₀."""
    norm = _per_image(target.pow(2)).clamp_min(1e-12)

    def fn(ctx: Context) -> Tensor:
        return _per_image((ctx.activations[layer] - target).pow(2)) / norm

    return Objective((Term(name, fn, layers=(layer,)),))


def gram(features: Tensor) -> Tensor:
    """(N, C, H, W) → (N, C, C) Gram matrices normalised by H·W (Gatys et al. 2015)."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def gram_distance(targets: Mapping[str, Tensor], name: str = "gram_distance") -> Objective:
    """Σ_l ‖G_l(x) − G_l*‖² / ‖G_l*‖² over the layers of ``targets`` ((N or 1, C, C) each), averaged over
    layers."""
    norms = {layer: g.pow(2).flatten(1).sum(1).clamp_min(1e-12) for layer, g in targets.items()}

    def fn(ctx: Context) -> Tensor:
        per_layer = [(gram(ctx.activations[layer]) - g).pow(2).flatten(1).sum(1) / norms[layer]
                     for layer, g in targets.items()]
        return torch.stack(per_layer).mean(0)

    return Objective((Term(name, fn, layers=tuple(targets)),))


def total_variation(power: float = 2.0) -> Objective:
    """Mean of ((Δx)² + (Δy)²)^(β/2) over the image (Mahendran & Vedaldi 2015's TV^β regulariser)."""

    def fn(ctx: Context) -> Tensor:
        img = ctx.image
        dx = img[..., :-1, 1:] - img[..., :-1, :-1]
        dy = img[..., 1:, :-1] - img[..., :-1, :-1]
        return _per_image((dx.pow(2) + dy.pow(2) + 1e-8).pow(power / 2))

    return Objective((Term("total_variation", fn),))


def l2_decay() -> Objective:
    """‖x − ½‖² per pixel (Simonyan et al. 2014's λ‖I‖², measured from mid-grey)."""

    def fn(ctx: Context) -> Tensor:
        return _per_image((ctx.image - 0.5).pow(2))

    return Objective((Term("l2_decay", fn),))
