"""What the gradient attribution techniques share: targets, input leaves, per-image scaling.

Every attribution technique has one entry point ``fn(model, x, target=None, params=Params(),
progress=None)`` taking the model's (normalised) input ``x`` of shape (N, 3, H, W) and returning
an :class:`~convlens.results.Attribution` whose ``map`` is (N, H, W) in [0, 1], aligned with ``x``.
``target`` is a class index, one per sample, or None for the predicted class. Gradients are taken
with ``torch.autograd.grad``: nothing accumulates in ``.grad``; the caller's tensors and model are
left untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from convlens.schema import SchemaError

Target = int | Sequence[int] | Tensor | None


class TargetError(SchemaError):
    """A target class or channel outside the model's range (a request error naming ``field``)."""

    def __init__(self, message: str, field: str = "target") -> None:
        super().__init__(field, message)


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


def check_input(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected input of shape (N, C, H, W), got {tuple(x.shape)}")


def input_leaf(model: nn.Module, x: Tensor) -> Tensor:
    check_input(x)
    return x.detach().to(model_device(model)).requires_grad_(True)


def class_gradient(model: nn.Module, x: Tensor, target: Target) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward, pick the target scores, backprop to the input. Returns (grad, target, score, logits)."""
    logits = model(x)
    t = resolve_target(logits, target)
    score = logits.gather(1, t[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad, t, score.detach(), logits.detach()
