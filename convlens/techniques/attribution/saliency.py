"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman 2014, §3.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convlens.images import Normalizer
from convlens.outputs import Scalar
from convlens.registry import technique
from convlens.results import Attribution, Progress
from convlens.techniques.attribution.common import Target, class_gradient, input_leaf, unit_scale


@dataclass(frozen=True)
class SaliencyParams:
    """Vanilla gradient saliency has no knobs: |dS_c/dx| max over colour channels."""


@technique(name="vanilla", title="Vanilla gradient", family="attribution", params=SaliencyParams,
           endpoint="saliency", order=10, reference="Simonyan, Vedaldi & Zisserman 2014",
           outputs=(Scalar("score", "the explained class's score (its logit)"),))
def saliency(
    model: nn.Module, x: Tensor, target: Target = None, params: SaliencyParams = SaliencyParams(),
    progress: Progress | None = None, to_input: Normalizer | None = None,
) -> Attribution:
    """Image-specific class saliency: map = max_c |dS_target / dx_c| over colour channels c,
    scaled to [0, 1] per image; ``S`` is the unnormalised class score (the logit, before softmax).
    """
    with torch.enable_grad():
        xl = input_leaf(model, x)
        grad, t, score, logits = class_gradient(model, xl, target)
    raw = grad.abs().amax(dim=1)
    return Attribution(unit_scale(raw), t, score, logits, gradient=grad, raw=raw, objective="class score")
