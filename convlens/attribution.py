"""Gradient attribution: vanilla saliency and guided backprop.

Every technique has one entry point ``fn(model, x, target=None, params=Params())``
taking the model's (normalised) input ``x`` of shape (N, 3, H, W) and returning an
:class:`Attribution` whose ``map`` is (N, H, W) in [0, 1], aligned with ``x``.
``target`` is a class index, one per sample, or None for the predicted class.
Gradients are taken with ``torch.autograd.grad``: nothing accumulates in ``.grad``
and the caller's tensors and model are left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from convlens.hooks import capture, guided_relu

Target = int | Sequence[int] | Tensor | None


class TargetError(ValueError):
    """A target class or channel outside the model's range."""


@dataclass(frozen=True)
class Attribution:
    """Result of an attribution technique.

    map:       (N, H, W) in [0, 1], aligned with the input.
    target:    (N,) the class (or, for a channel objective, the channel) explained.
    score:     (N,) the value whose gradient was taken (an unnormalised class score).
    logits:    (N, K) the forward pass's class scores (for the top-k, at no extra cost).
    gradient:  (N, 3, H, W) signed input gradient, for techniques that have one.
    raw:       unnormalised map at its native resolution (e.g. Grad-CAM at the layer's grid).
    objective: what was explained, in words.
    """

    map: Tensor
    target: Tensor
    score: Tensor
    logits: Tensor
    gradient: Tensor | None = None
    raw: Tensor | None = None
    objective: str = ""
    scalars: dict[str, float] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def resolve_target(logits: Tensor, target: Target) -> Tensor:
    """(N,) int64 targets: the argmax for None, a scalar broadcast, or one per sample."""
    n, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device).long().flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise TargetError(f"got {t.numel()} targets for a batch of {n}")
    if bool(((t < 0) | (t >= k)).any()):
        raise TargetError(f"target must be in [0, {k - 1}], got {t.tolist()}")
    return t


def unit_scale(m: Tensor, eps: float = 1e-12) -> Tensor:
    """Divide each non-negative map of (N, ...) by its maximum (an all-zero map stays 0)."""
    peak = m.flatten(1).amax(dim=1).clamp_min(eps)
    return m / peak.view(-1, *([1] * (m.ndim - 1)))


def _input_leaf(model: nn.Module, x: Tensor) -> Tensor:
    if x.ndim != 4:
        raise ValueError(f"expected input of shape (N, C, H, W), got {tuple(x.shape)}")
    return x.detach().to(model_device(model)).requires_grad_(True)


def _class_gradient(model: nn.Module, x: Tensor, target: Target) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward, pick the target scores, backprop to the input. Returns (grad, target, score, logits)."""
    logits = model(x)
    t = resolve_target(logits, target)
    score = logits.gather(1, t[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad, t, score.detach(), logits.detach()


@dataclass(frozen=True)
class SaliencyParams:
    """Vanilla gradient saliency has no knobs: |dS_c/dx| max over colour channels."""


def saliency(
    model: nn.Module, x: Tensor, target: Target = None, params: SaliencyParams = SaliencyParams()
) -> Attribution:
    """Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014, §3.1).

    map = max_c |dS_target / dx_c| over colour channels c, scaled to [0, 1] per image;
    ``S`` is the unnormalised class score (the logit, before softmax).
    """
    with torch.enable_grad():
        xl = _input_leaf(model, x)
        grad, t, score, logits = _class_gradient(model, xl, target)
    raw = grad.abs().amax(dim=1)
    return Attribution(unit_scale(raw), t, score, logits, gradient=grad, raw=raw, objective="class score")


@dataclass(frozen=True)
class GuidedParams:
    """``layer`` set: explain one neuron of that layer instead of a class score.

    ``channel`` None picks the channel with the largest activation; ``reduce="max"``
    explains that channel's strongest unit (Springenberg et al.; Zeiler & Fergus),
    ``"sum"`` the whole activation map of the channel.
    """

    layer: str | None = None
    channel: int | None = None
    reduce: Literal["max", "sum"] = "max"


def guided_backprop(
    model: nn.Module, x: Tensor, target: Target = None, params: GuidedParams = GuidedParams()
) -> Attribution:
    """Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity", §3.4).

    Backward through every ReLU passes only positive gradients at positive inputs.
    Raises :class:`~convlens.hooks.UnsupportedArchitectureError` for networks with
    non-ReLU activations, for which the rule is undefined.
    """
    layers = [params.layer] if params.layer else []
    with torch.enable_grad(), capture(model, layers) as cap, guided_relu(model):
        xl = _input_leaf(model, x)
        if params.layer is None:
            grad, t, score, logits = _class_gradient(model, xl, target)
            objective = "class score"
        else:
            logits = model(xl).detach()
            score_t, t, objective = _channel_objective(cap[params.layer], params)
            (grad,) = torch.autograd.grad(score_t.sum(), xl)
            score = score_t.detach()
    raw = grad.abs().amax(dim=1)
    return Attribution(unit_scale(raw), t, score, logits, gradient=grad, raw=raw, objective=objective)


def _channel_objective(act: Tensor, params: GuidedParams) -> tuple[Tensor, Tensor, str]:
    """Per-sample scalar of one channel of ``act`` (N, C, ...) → (score, channel, description)."""
    n, c = act.shape[:2]
    flat = act.reshape(n, c, -1)
    if params.channel is None:
        ch = flat.detach().amax(dim=2).argmax(dim=1)
    else:
        if not 0 <= params.channel < c:
            raise TargetError(f"channel must be in [0, {c - 1}] for layer {params.layer!r}, got {params.channel}")
        ch = torch.full((n,), params.channel, dtype=torch.long, device=act.device)
    per_channel = flat[torch.arange(n, device=act.device), ch]  # (N, H*W)
    score = per_channel.amax(dim=1) if params.reduce == "max" else per_channel.sum(dim=1)
    return score, ch, f"{params.layer} channel ({params.reduce})"
