"""The model's prediction: its top-k classes, and the probability and logit of the target (or the top class)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convlens.outputs import Scalar
from convlens.registry import technique, topk_field
from convlens.results import Progress


@dataclass(frozen=True)
class ClassifyParams:
    """``topk``: how many of the most probable classes the answer lists."""

    topk: int = topk_field()


@technique(name="classify", title="Classify", family="prediction", params=ClassifyParams, endpoint="classify",
           page="attribution", order=10, reference="the network's own forward pass (softmax over its logits)",
           outputs=(Scalar("probability", "softmax probability of the target class", role="headline"),
                    Scalar("logit", "the target class's logit (before softmax)")))
def classify(model: nn.Module, x: Tensor, params: ClassifyParams = ClassifyParams(),
             progress: Progress | None = None) -> Tensor:
    """One forward pass, no gradients: the logits (N, classes) as float32."""
    with torch.no_grad():
        return model(x).float()
