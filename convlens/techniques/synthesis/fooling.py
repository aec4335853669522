"""Fooling images (Szegedy et al. 2014; Goodfellow et al. 2015; CS231n lecture 12): a change within an L∞ budget
that makes the model say a chosen class. The change δ takes signed steps (projected gradient descent, Madry et
al. 2018) under ‖δ‖∞ ≤ ε and x + δ ∈ [0, 1]; the run stops the step the model says the target.

Default attack: the margin loss of Carlini & Wagner (2017), momentum on the normalised gradient (MI-FGSM,
Dong et al. 2018) and a half-cosine step schedule from ``lr`` down to lr/20. On the built-in model it reaches
more targets within 8/255 and 100 steps than plain signed steps on the cross-entropy (``loss="cross_entropy",
momentum=0, schedule="constant", lr=1``: the previous default); its large first steps reach the target with
a larger change than needed, which the minimising rounds then cut (docs/benchmarks.md, MODEL_CARD.md
"Robustness").

Smallest change: once the target is reached, the rest of the step budget shrinks the change (``minimise``).
Each round projects the smallest change that fooled so far onto a smaller L∞ budget and attacks from there (its
first step scaled down alike) for at most ``max(10, steps // 10)`` steps: the budget is 80 % of that change's
L∞ until a round fails, then halfway between the largest budget that failed and the smallest change that
fooled, until the two are within a quarter of a grey level. A round whose projected change still fools costs
one step, so this is a line search down the budget where the model is nearly linear and an attack where it is not.

Defaults that fool: with no target, the class easiest to reach (:func:`easiest_target`, DeepFool's first-order
distance), and a 16/255 budget, where the built-in model's measured curve reaches 99/100 held-out images towards
random classes (docs/benchmarks.md); the model's measured curve (:mod:`robustness`) comes with the result."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar, Series
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis import robustness
from convlens.techniques.synthesis.common import (
    STEPS,
    Inputs,
    history_of,
    loop_scalars,
    predict,
    square,
    stage,
    synthesis,
    term,
    totals,
)
from convlens.techniques.synthesis.loop import LoopResult, SignedMomentum, optimize
from convlens.techniques.synthesis.param import ImageParam


@dataclass(frozen=True)
class FoolingParams:
    """``epsilon`` is the L∞ budget in 1/255 steps; ``lr`` the size of the first signed step, also in 1/255 units
    (``schedule="cosine"`` lowers it to lr/20 by the last step); ``momentum`` μ of MI-FGSM (0: plain steps);
    ``loss`` the margin (largest other logit − target logit) or the cross-entropy towards the target."""

    epsilon: float = bounded(16.0, 0.5, 64.0)
    steps: int = bounded(100, 1, MAX_STEPS)
    lr: float = bounded(4.0, 0.01, 16.0)
    momentum: float = bounded(0.9, 0.0, 1.0)
    loss: Literal["margin", "cross_entropy"] = "margin"
    schedule: Literal["cosine", "constant"] = "cosine"
    minimise: bool = True  # spend the steps left after the target is reached on shrinking the change
    seed: int = seed_field()


CANDIDATES = 10  # easiest_target weighs the classes of the largest logits after the predicted one's
SHRINK = 0.8  # a minimising round's budget, as a fraction of the smallest fooling change's L∞, until one fails
RESOLUTION = 0.25 / 255  # the search ends when the smallest fool and the largest failure are this close


class Perturbation(ImageParam):
    """x₀ + δ with δ projected onto the L∞ ball of radius ``epsilon`` and the image onto [0, 1]."""

    original: Tensor

    def __init__(self, original: Tensor, epsilon: float, start: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("original", original.detach().clone())
        self.delta = nn.Parameter(torch.zeros_like(original) if start is None else start.detach().clone())
        self.epsilon = epsilon
        self.project()

    def image(self) -> Tensor:
        return self.original + self.delta

    @torch.no_grad()
    def project(self) -> None:
        self.delta.clamp_(-self.epsilon, self.epsilon)
        self.delta.copy_((self.original + self.delta).clamp(0, 1) - self.original)


def easiest_target(loaded: LoadedModel, x: Tensor, candidates: int = CANDIDATES) -> int:
    """The class the model is nearest to saying instead of its prediction y on (1, 3, S, S) ``x``, to first order
    (DeepFool's L∞ form, Moosavi-Dezfooli et al. 2016): among the ``candidates`` largest other logits, the class c
    with the smallest (z_y − z_c) / ‖∇ₓ(z_y − z_c)‖₁, the L∞ change that would make c win were the model linear."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = loaded.net(loaded.preprocessing.normalize(x))[0].float()
        order = logits.argsort(descending=True)
        predicted, others = order[0], order[1:candidates + 1].tolist()
        distances = []
        for c in others:
            gap = logits[predicted] - logits[c]
            (grad,) = torch.autograd.grad(gap, x, retain_graph=True)
            distances.append(float(gap.detach()) / max(float(grad.abs().sum()), 1e-12))
    return int(others[min(range(len(others)), key=distances.__getitem__)])


def attack(loaded: LoadedModel, x: Tensor, target: int, epsilon: float, lr: float, steps: int,
           params: FoolingParams, start: Tensor | None = None, progress: Progress | None = None) -> LoopResult:
    """One projected attack on (1, 3, S, S) ``x`` within ``epsilon`` (in [0, 1] units) from δ = ``start``; it
    stops the step the model says ``target``."""
    param = Perturbation(x, epsilon, start)
    objective = obj.class_margin(target) if params.loss == "margin" else obj.class_probability(target)

    def reached(ctx: obj.Context) -> bool:
        return ctx.logits is not None and bool((ctx.logits.argmax(dim=1) == target).all())

    return optimize(loaded.net, param, objective, steps, lr=lr, to_input=loaded.preprocessing.normalize,
                    seed=params.seed, progress=progress, stop=reached, preview_every=5,
                    optimizer=partial(SignedMomentum, momentum=params.momentum, steps=steps,
                                      cosine=params.schedule == "cosine"))


@dataclass
class Fooled:
    best: LoopResult  # the run that ended with the smallest change that fooled, else the first attack
    runs: list[LoopResult]  # every run, in order
    steps_to_fool: int  # steps of the first attack when it fooled, else 0


def fool(loaded: LoadedModel, x: Tensor, target: int, params: FoolingParams,
         progress: Progress | None = None) -> Fooled:
    """The first attack within ``params.epsilon``, then (``minimise``) rounds within shrinking budgets."""
    def says_target(image: Tensor) -> bool:
        return predict(loaded, image)[0] == target

    epsilon, lr = params.epsilon / 255, params.lr / 255
    first = attack(loaded, x, target, epsilon, lr, params.steps, params, progress=stage(progress, 0, params.steps))
    runs, best = [first], first
    if not says_target(first.image):
        return Fooled(first, runs, 0)
    used, linf, failed = first.steps, float((first.image - x).abs().max()), 0.0
    while params.minimise and not runs[-1].cancelled and used < params.steps and linf - failed >= RESOLUTION:
        budget = (failed + linf) / 2 if failed else linf * SHRINK
        rounds = min(params.steps - used, max(10, params.steps // 10))
        run = attack(loaded, x, target, budget, lr * budget / epsilon, rounds, params, start=best.image - x,
                     progress=stage(progress, used, params.steps))
        runs.append(run)
        used += run.steps
        if says_target(run.image):
            best, linf = run, float((run.image - x).abs().max())
        else:
            failed = budget
    return Fooled(best, runs, first.steps)


@technique(name="fooling", title="Fooling image", family="synthesis", params=FoolingParams, inputs=("image",),
           page="fooling",
           order=30, reference="Szegedy et al. 2014; CS231n lecture 12", outputs=(
               Image("original", "original: {original_label} ({original_probability:.0%})"),
               Image("change", "change, amplified (L∞ = {linf_255:.1f}/255)", kind="map"),
               Image("result", "fooled: {result_label} ({result_probability:.0%})", role="primary"),
               Label("original_label", "what the model says of the original"),
               Label("result_label", "what the model says of the changed image"),
               Label("target_label", "the class the change aims for"),
               Scalar("original_class", "index of the original's class", integer=True),
               Scalar("original_probability", "the model's probability for the original's class"),
               Scalar("result_class", "index of the changed image's class", integer=True),
               Scalar("result_probability", "the model's probability for the changed image's class"),
               Scalar("target", "index of the class the change aims for", integer=True),
               Scalar("easiest", "1 when no target was asked and the easiest class to reach was aimed for",
                      integer=True),
               # a verdict: shown as a success when 1, a warning when 0, so its caption reads right both ways
               Scalar("fooled", "Does the model now say “{target_label}”? It says “{result_label}” after {steps:.0f} "
                                "steps (L∞ {linf_255:.1f}/255)", role="verdict", integer=True),
               Scalar("linf_255", "largest change of a pixel (L∞)", "/255"),
               Scalar("first_linf_255", "largest change of a pixel when the target was first reached", "/255"),
               Scalar("l2", "size of the change (L2, pixels in [0, 1])"),
               STEPS, Scalar("steps_to_fool", "steps until the model first said the target (0: never)", integer=True),
               Scalar("minimising_rounds", "rounds that then shrank the change", integer=True),
               # the model's robustness curve, measured offline on held-out images (robustness.measured_curve)
               Series("robustness", "share of held-out images fooled within each L∞ budget", unit="/255",
                      optional=True),
               Scalar("robustness_images", "held-out images the robustness curve was measured on", optional=True,
                      integer=True),
               # the loss term is named by params.loss
               *term("margin", "largest other logit minus the target's", optional=True),
               *term("cross_entropy", "cross-entropy towards the target", optional=True)))
def fooling_image(loaded: LoadedModel, inputs: Inputs, target: int | None,
                  params: FoolingParams = FoolingParams(), progress: Progress | None = None) -> Synthesis:
    """``result`` (the fooled image), ``original``, ``change`` (δ amplified to the full range, grey = 0)."""
    x = square(inputs["image"], loaded.preprocessing.input_size).to(loaded.device)
    original_class, original_p = predict(loaded, x)
    easiest = target is None
    target = easiest_target(loaded, x) if target is None else target
    fooled = fool(loaded, x, target, params, progress)
    delta = fooled.best.image - x
    linf = float(delta.abs().max())
    result_class, result_p = predict(loaded, fooled.best.image)
    change = 0.5 + delta / (2 * max(linf, 1e-8))
    runs = fooled.runs
    curve = robustness.measured_curve(loaded)
    return synthesis(
        {"result": fooled.best.image, "original": x, "change": change}, history_of(*runs),
        {**loop_scalars(fooled.best), **totals(*runs),
         "steps_to_fool": float(fooled.steps_to_fool), "minimising_rounds": float(len(runs) - 1),
         "first_linf_255": float((runs[0].image - x).abs().max()) * 255,
         "original_class": float(original_class), "original_probability": original_p,
         "result_class": float(result_class), "result_probability": result_p, "target": float(target),
         "easiest": float(easiest), **({} if curve is None else {"robustness_images": float(curve.images)}),
         "fooled": float(result_class == target), "linf_255": linf * 255, "l2": float(delta.norm())},
        {"original_label": loaded.label(original_class), "result_label": loaded.label(result_class),
         "target_label": loaded.label(target)},
        {} if curve is None else {"robustness": curve.series()})
