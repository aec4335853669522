"""The one render loop every synthesis technique runs on.

``optimize`` takes a model, an image parameterisation, an objective, transforms, a seed and a step budget;
it reports progress with a preview image, records the history of every objective term, never prints,
takes the device from the parameterisation (which the technique built on the model's device), and
removes every hook it registered, also when the progress callback cancels the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from convlens.hooks import capture
from convlens.results import Cancelled, Progress
from convlens.techniques.synthesis.objectives import Context, Objective
from convlens.techniques.synthesis.param import ImageParam
from convlens.techniques.synthesis.transforms import Transform

StepHook = Callable[[int, ImageParam], None]  # runs after each optimiser step (blur every k, clipping)


@dataclass
class LoopResult:
    image: Tensor  # (N, 3, H, W) in [0, 1], detached
    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    final: dict[str, float] = field(default_factory=dict)


class GradientStep(torch.optim.Optimizer):
    """p ← p − lr · direction(g): plain steps along a rescaled gradient (no momentum)."""

    def __init__(self, params: object, lr: float, direction: Callable[[Tensor], Tensor]) -> None:
        super().__init__(params, {"lr": lr})  # type: ignore[arg-type]
        self.direction = direction

    @torch.no_grad()
    def step(self, closure: object = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * self.direction(p.grad))


def normalized(grad: Tensor) -> Tensor:
    """g / mean|g| (DeepDream's step, Mordvintsev et al. 2015): the step is in pixel units whatever the
    objective's scale."""
    return grad / grad.abs().mean().clamp_min(1e-12)


class SignedMomentum(torch.optim.Optimizer):
    """Momentum iterative sign steps (MI-FGSM, Dong et al. 2018) on a half-cosine step schedule.

    v ← μ·v + g / mean|g| (per tensor); p ← p − lr_k · sign(v), with lr_k = lr · (½(1 + cos(π k / steps)) + 0.05)
    for the k-th step (k = 0, 1, …): from 1.05·lr down to 0.05·lr over ``steps``, so the first steps cross
    flat regions and the last ones settle inside the L∞ ball. ``cosine=False`` keeps lr_k = lr; with μ = 0 as
    well these are plain sign steps, the steepest under an L∞ budget (projected gradient descent, Madry et al. 2018).
    """

    def __init__(self, params: object, lr: float, momentum: float, steps: int, cosine: bool = True) -> None:
        super().__init__(params, {"lr": lr})  # type: ignore[arg-type]
        self.momentum, self.steps, self.cosine, self.taken = momentum, max(steps, 1), cosine, 0

    def step_size(self, lr: float) -> float:
        """lr_k of the next step."""
        if not self.cosine:
            return lr
        return lr * (0.5 * (1 + math.cos(math.pi * self.taken / self.steps)) + 0.05)

    @torch.no_grad()
    def step(self, closure: object = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            size = self.step_size(group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                velocity = self.state[p].setdefault("velocity", torch.zeros_like(p))
                velocity.mul_(self.momentum).add_(normalized(p.grad))
                p.sub_(size * velocity.sign())
        self.taken += 1


OptimizerFactory = Callable[[object, float], torch.optim.Optimizer]  # (parameters, lr) → optimiser
OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),  # type: ignore[arg-type]
    "normalized": lambda params, lr: GradientStep(params, lr, normalized),
    "sign": lambda params, lr: SignedMomentum(params, lr, momentum=0.0, steps=1, cosine=False),
}


class _Reached(Exception):
    """Raised by a hook once every layer the objective needs has been computed (the rest is skipped)."""


def forward(model: nn.Module, x: Tensor, objective: Objective) -> tuple[dict[str, Tensor], Tensor | None]:
    """Run as much of ``model`` as ``objective`` needs: the whole net for logits, else up to its last layer."""
    layers = objective.layers
    if not layers:
        return {}, model(x)
    with capture(model, layers) as captured:
        if objective.needs_logits:
            logits = model(x)
            return dict(captured.activations), logits
        names = set(layers)

        def stop_when_all_seen(_module: nn.Module, _inputs: object, _output: object) -> None:
            if names.issubset(captured.activations):
                raise _Reached

        # registered after capture's hooks, so it runs once the layer's output has been recorded
        handles = [model.get_submodule(name).register_forward_hook(stop_when_all_seen) for name in layers]
        try:
            model(x)
        except _Reached:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return dict(captured.activations), None


def _reported(progress: Progress, step: int, steps: int, param: ImageParam, with_preview: bool) -> bool:
    """Report a step (every step, so a cancel lands at once; a preview only when asked); False if cancelled."""
    preview = None
    if with_preview:
        with torch.no_grad():
            preview = param.image()[0].clamp(0, 1)
    try:
        progress(step, steps, preview)
    except Cancelled:
        return False
    return True


def optimize(
    model: nn.Module,
    param: ImageParam,
    objective: Objective,
    steps: int,
    *,
    lr: float = 0.05,
    to_input: Callable[[Tensor], Tensor] = lambda x: x,
    transforms: Sequence[Transform] = (),
    seed: int = 0,
    progress: Progress | None = None,
    preview_every: int = 10,
    after_step: Sequence[StepHook] = (),
    stop: Callable[[Context], bool] | None = None,
    optimizer: str | OptimizerFactory = "adam",
) -> LoopResult:
    """Minimise ``objective`` over ``param`` with Adam for ``steps`` steps.

    ``to_input`` maps the [0, 1] image to the model's input; ``stop`` ends the run early (e.g. the class flipped);
    ``progress(step, steps, preview)`` runs after every step, with the first image every ``preview_every`` steps
    (else None), and may raise :class:`Cancelled` — the run then returns what it has.
    ``optimizer``: ``adam``, ``normalized`` (:func:`normalized` steps), ``sign`` (plain sign steps) or a
    factory ``(parameters, lr) → Optimizer`` (e.g. :class:`SignedMomentum`).
    """
    generator = torch.Generator().manual_seed(seed)
    opt = (OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer)(param.parameters(), lr)
    history: dict[str, list[float]] = {}
    started = time.perf_counter()
    result = LoopResult(image=param.image().detach().clamp(0, 1))
    with torch.enable_grad():
        for step in range(1, steps + 1):
            opt.zero_grad(set_to_none=True)
            image = param.image()
            x = image
            for transform in transforms:
                x = transform(x, generator)
            activations, logits = forward(model, to_input(x), objective)
            ctx = Context(image, activations, logits)
            loss, values = objective(ctx)
            for name, value in values.items():
                history.setdefault(name, []).append(value)
            done = stop is not None and stop(ctx)
            if not done:
                loss.sum().backward()
                opt.step()
                param.project()
                for hook in after_step:
                    hook(step, param)
            result.steps = step
            if progress is not None and not _reported(progress, step, steps, param,
                                                      done or step % preview_every == 0 or step == steps):
                result.cancelled = True
                break
            if done:
                break
    result.image = param.image().detach().clamp(0, 1)
    result.history = history
    result.final = {name: values[-1] for name, values in history.items()}
    result.seconds = time.perf_counter() - started
    return result
