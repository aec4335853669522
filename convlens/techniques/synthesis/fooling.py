"""Fooling images (Szegedy et al. 2014; Goodfellow et al. 2015; CS231n lecture 12): a change within an L∞ budget
that makes the model say a chosen class. The change δ takes signed steps (projected gradient descent, Madry et
al. 2018) under ‖δ‖∞ ≤ ε and x + δ ∈ [0, 1]; the run stops the step the model says the target.

Default attack: the margin loss of Carlini & Wagner (2017), momentum on the normalised gradient (MI-FGSM,
Dong et al. 2018) and a half-cosine step schedule from ``lr`` down to lr/20. On the built-in model it reaches
more targets within 8/255 and 100 steps than plain signed steps on the cross-entropy (``loss="cross_entropy",
momentum=0, schedule="constant", lr=1``: the previous default), at the price of a larger median L∞
(docs/benchmarks.md, MODEL_CARD.md "Robustness")."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from convlens.models import LoadedModel
from convlens.registry import bounded, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import Inputs, loop_scalars, predict, square, synthesis
from convlens.techniques.synthesis.loop import SignedMomentum, optimize
from convlens.techniques.synthesis.param import ImageParam


@dataclass(frozen=True)
class FoolingParams:
    """``epsilon`` is the L∞ budget in 1/255 steps; ``lr`` the size of the first signed step, also in 1/255 units
    (``schedule="cosine"`` lowers it to lr/20 by the last step); ``momentum`` μ of MI-FGSM (0: plain steps);
    ``loss`` the margin (largest other logit − target logit) or the cross-entropy towards the target."""

    epsilon: float = bounded(8.0, 0.5, 64.0)
    steps: int = bounded(100, 1, MAX_STEPS)
    lr: float = bounded(4.0, 0.01, 16.0)
    momentum: float = bounded(0.9, 0.0, 1.0)
    loss: Literal["margin", "cross_entropy"] = "margin"
    schedule: Literal["cosine", "constant"] = "cosine"
    seed: int = 0


class Perturbation(ImageParam):
    """x₀ + δ with δ projected onto the L∞ ball of radius ``epsilon`` and the image onto [0, 1]."""

    original: Tensor

    def __init__(self, original: Tensor, epsilon: float) -> None:
        super().__init__()
        self.register_buffer("original", original.detach().clone())
        self.delta = nn.Parameter(torch.zeros_like(original))
        self.epsilon = epsilon

    def image(self) -> Tensor:
        return self.original + self.delta

    @torch.no_grad()
    def project(self) -> None:
        self.delta.clamp_(-self.epsilon, self.epsilon)
        self.delta.copy_((self.original + self.delta).clamp(0, 1) - self.original)


def fool(loaded: LoadedModel, x: Tensor, target: int, params: FoolingParams, progress: Progress | None = None):  # type: ignore[no-untyped-def]
    """(1, 3, S, S) in [0, 1] → the loop's result for reaching ``target``."""
    param = Perturbation(x, params.epsilon / 255)
    objective = obj.class_margin(target) if params.loss == "margin" else obj.class_probability(target)

    def reached(ctx: obj.Context) -> bool:
        return ctx.logits is not None and bool((ctx.logits.argmax(dim=1) == target).all())

    return optimize(loaded.net, param, objective, params.steps, lr=params.lr / 255,
                    to_input=loaded.preprocessing.normalize, seed=params.seed, progress=progress, stop=reached,
                    preview_every=5, optimizer=partial(SignedMomentum, momentum=params.momentum, steps=params.steps,
                                                       cosine=params.schedule == "cosine"))


@technique(name="fooling", title="Fooling image", family="synthesis", params=FoolingParams, inputs=("image",),
           order=30, reference="Szegedy et al. 2014; CS231n lecture 12")
def fooling_image(loaded: LoadedModel, inputs: Inputs, target: int | None,
                  params: FoolingParams = FoolingParams(), progress: Progress | None = None) -> Synthesis:
    """``result`` (the fooled image), ``original``, ``change`` (δ amplified to the full range, grey = 0)."""
    x = square(inputs["image"], loaded.preprocessing.input_size).to(loaded.device)
    original_class, original_p = predict(loaded, x)
    if target is None:  # a seeded random class other than the predicted one
        others = [c for c in range(len(loaded.classes)) if c != original_class]
        target = others[int(torch.randint(len(others), (1,), generator=torch.Generator().manual_seed(params.seed)))]
    run = fool(loaded, x, target, params, progress)
    delta = run.image - x
    linf = float(delta.abs().max())
    result_class, result_p = predict(loaded, run.image)
    change = 0.5 + delta / (2 * max(linf, 1e-8))
    return synthesis(
        {"result": run.image, "original": x, "change": change}, run.history,
        {**loop_scalars(run), "original_class": float(original_class), "original_probability": original_p,
         "result_class": float(result_class), "result_probability": result_p, "target": float(target),
         "fooled": float(result_class == target), "linf_255": linf * 255, "l2": float(delta.norm())},
        {"original_label": loaded.label(original_class), "result_label": loaded.label(result_class),
         "target_label": loaded.label(target)})
