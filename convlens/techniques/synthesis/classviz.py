"""Class visualisation by gradient ascent on the class score (Simonyan et al. 2014) with the regularisers of
Yosinski et al. 2015, each switchable: L2 decay, Gaussian blur every k steps, clipping of pixels with a
small norm and of pixels with a small contribution (|x · ∂S/∂x|)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from convlens import images
from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_SYNTHESIS_SIZE, SchemaError
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import STEPS, Inputs, loop_scalars, predict, required_target, synthesis, term
from convlens.techniques.synthesis.loop import StepHook, optimize
from convlens.techniques.synthesis.param import ImageParam, PixelImage, make_param
from convlens.techniques.synthesis.transforms import standard


@dataclass(frozen=True)
class ClassVizParams:
    """Zero disables a regulariser. ``decay``: x ← ½ + (1 − decay)(x − ½) each step; ``blur_every`` k steps
    with ``blur_sigma`` px; ``clip_norm``/``clip_contribution``: the percentile of pixels set to grey."""

    steps: int = bounded(200, 1, MAX_STEPS)
    lr: float = bounded(0.05, 1e-4, 1.0)
    size: int | None = bounded(None, 16, MAX_SYNTHESIS_SIZE)  # None: the model's input size
    parameterisation: Literal["pixels", "fourier"] = "pixels"
    decay: float = bounded(0.01, 0.0, 0.5)
    blur_every: int = bounded(4, 0, 100)
    blur_sigma: float = bounded(0.5, 0.0, 5.0)
    clip_norm: float = bounded(10.0, 0.0, 99.0)
    clip_contribution: float = bounded(10.0, 0.0, 99.0)
    jitter: int = bounded(4, 0, 64)
    scale: float = bounded(0.0, 0.0, 0.5)  # random rescaling by up to ±scale (transformation robustness)
    rotate: float = bounded(0.0, 0.0, 45.0)  # random rotation by up to ±rotate degrees
    seed: int = seed_field()


def regularisers(params: ClassVizParams) -> list[StepHook]:
    """Yosinski et al. 2015's image-space regularisers as step hooks on a pixel image."""
    hooks: list[StepHook] = []

    def decay(step: int, param: ImageParam) -> None:
        assert isinstance(param, PixelImage)
        with torch.no_grad():
            param.pixels.sub_(0.5).mul_(1 - params.decay).add_(0.5)

    def blur(step: int, param: ImageParam) -> None:
        assert isinstance(param, PixelImage)
        if step % params.blur_every == 0:
            with torch.no_grad():
                param.pixels.copy_(images.gaussian_blur(param.pixels, params.blur_sigma))

    def clip(step: int, param: ImageParam) -> None:
        assert isinstance(param, PixelImage)
        with torch.no_grad():
            centred = param.pixels - 0.5
            if params.clip_norm > 0:
                _grey_below(param.pixels, centred.norm(dim=1), params.clip_norm)
            if params.clip_contribution > 0 and param.pixels.grad is not None:
                contribution = (centred * -param.pixels.grad).sum(dim=1).abs()
                _grey_below(param.pixels, contribution, params.clip_contribution)

    if params.decay > 0:
        hooks.append(decay)
    if params.blur_every > 0 and params.blur_sigma > 0:
        hooks.append(blur)
    if params.clip_norm > 0 or params.clip_contribution > 0:
        hooks.append(clip)
    return hooks


def _grey_below(pixels: Tensor, score: Tensor, percentile: float) -> None:
    """Set to mid-grey the pixels whose ``score`` (N, H, W) is below the image's ``percentile``."""
    threshold = torch.quantile(score.flatten(1), percentile / 100, dim=1).view(-1, 1, 1)
    pixels.masked_fill_((score < threshold)[:, None].expand_as(pixels), 0.5)


@technique(name="classviz", title="Class visualisation", family="synthesis", params=ClassVizParams, inputs=(),
           page="imagine",
           order=10, reference="Simonyan et al. 2014; Yosinski et al. 2015", outputs=(
               Image("result", "“{target_label}” — the model says {predicted_label} ({target_probability:.0%} for "
                               "the target)", role="primary"),
               Label("target_label", "the class visualised"), Label("predicted_label", "what the model says it is"),
               Scalar("target_probability", "the model's probability for the class visualised"),
               Scalar("predicted_class", "index of the class the model says", integer=True),
               Scalar("predicted_probability", "the model's probability for the class it says"),
               STEPS, *term("class_score", "class score (logit)")))
def class_visualisation(loaded: LoadedModel, inputs: Inputs, target: int | None,
                        params: ClassVizParams = ClassVizParams(), progress: Progress | None = None) -> Synthesis:
    """An image (1, 3, S, S) that maximises the class score S_c of ``target``."""
    target = required_target(target, "classviz")
    reg = regularisers(params)
    if params.parameterisation == "fourier" and (params.clip_norm or params.clip_contribution or params.blur_every):
        raise SchemaError("params.parameterisation", "the pixel regularisers (blur, clipping) need pixels; set "
                                                     "blur_every, clip_norm and clip_contribution to 0 for fourier")
    size = params.size or loaded.preprocessing.input_size
    generator = torch.Generator().manual_seed(params.seed)
    param = make_param(params.parameterisation, 1, (size, size), generator, loaded.device, noise=0.02)
    robustness = standard(jitter_px=params.jitter, degrees=params.rotate,
                          scales=(1 - params.scale, 1.0, 1 + params.scale) if params.scale else ())
    run = optimize(loaded.net, param, obj.class_score(target), params.steps, lr=params.lr,
                   to_input=loaded.preprocessing.normalize, transforms=robustness,
                   seed=params.seed, progress=progress, after_step=reg if params.parameterisation == "pixels" else ())
    cls, p = predict(loaded, run.image)
    with torch.no_grad():
        target_p = float(torch.softmax(loaded.net(loaded.preprocessing.normalize(run.image)), 1)[0, target])
    return synthesis({"result": run.image}, run.history,
                     {**loop_scalars(run), "predicted_class": float(cls), "predicted_probability": p,
                      "target_probability": target_p},
                     {"target_label": loaded.label(target), "predicted_label": loaded.label(cls)})
