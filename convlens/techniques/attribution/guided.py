"""Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity", §3.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convlens.hooks import capture, guided_relu
from convlens.images import Normalizer
from convlens.outputs import Image, Scalar
from convlens.registry import technique
from convlens.results import Attribution, Progress
from convlens.techniques.attribution.common import Target, TargetError, class_gradient, input_leaf, unit_scale


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


@technique(name="guided", title="Guided backprop", family="attribution", params=GuidedParams,
           layer="optional", endpoint="saliency", order=20, reference="Springenberg et al. 2015",
           outputs=(Scalar("score", "the explained class's logit, or the chosen channel's activation"),
                    Image("gradient", "signed guided gradient (grey = 0)", kind="map")))
def guided_backprop(
    model: nn.Module, x: Tensor, target: Target = None, params: GuidedParams = GuidedParams(),
    progress: Progress | None = None, to_input: Normalizer | None = None,
) -> Attribution:
    """Backward through every ReLU passes only positive gradients at positive inputs.

    Raises :class:`~convlens.hooks.UnsupportedArchitectureError` for networks with
    non-ReLU activations, for which the rule is undefined.
    """
    if params.channel is not None and params.layer is None:
        raise TargetError("a channel needs a layer: set layer to explain one of its channels", "params.channel")
    layers = [params.layer] if params.layer else []
    with torch.enable_grad(), capture(model, layers) as cap, guided_relu(model):
        xl = input_leaf(model, x)
        if params.layer is None:
            grad, t, score, logits = class_gradient(model, xl, target)
            objective = "class score"
        else:
            logits = model(xl).detach()
            score_t, t, objective = _channel_objective(cap[params.layer], params)
            (grad,) = torch.autograd.grad(score_t.sum(), xl)
            score = score_t.detach()
    raw = grad.abs().amax(dim=1)
    return Attribution(unit_scale(raw), t, score, logits, gradient=grad, raw=raw, objective=objective,
                       signed={"gradient": grad})


def _channel_objective(act: Tensor, params: GuidedParams) -> tuple[Tensor, Tensor, str]:
    """Per-sample scalar of one channel of ``act`` (N, C, ...) → (score, channel, description)."""
    n, c = act.shape[:2]
    flat = act.reshape(n, c, -1)
    if params.channel is None:
        ch = flat.detach().amax(dim=2).argmax(dim=1)
    else:
        if not 0 <= params.channel < c:
            raise TargetError(f"channel must be in [0, {c - 1}] for layer {params.layer!r}, got {params.channel}",
                              "params.channel")
        ch = torch.full((n,), params.channel, dtype=torch.long, device=act.device)
    per_channel = flat[torch.arange(n, device=act.device), ch]  # (N, H*W)
    score = per_channel.amax(dim=1) if params.reduce == "max" else per_channel.sum(dim=1)
    return score, ch, f"{params.layer} channel ({params.reduce})"
