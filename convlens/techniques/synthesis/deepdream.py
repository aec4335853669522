"""DeepDream (Mordvintsev, Olah & Tyka 2015; Chollet §8.2 / CS231n lecture 12): raise the L2 norm of a layer's
activations by gradient ascent on the image, the step normalised by the gradient's mean absolute value,
with jitter, over octaves from coarse to fine; the detail lost by downscaling is put back at each octave."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from convlens.models import LoadedModel
from convlens.outputs import Image, Scalar, Series
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_SYNTHESIS_SIZE
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import STEPS, Inputs, fit, history_of, stage, synthesis, totals
from convlens.techniques.synthesis.loop import LoopResult, optimize
from convlens.techniques.synthesis.param import PixelImage
from convlens.techniques.synthesis.transforms import standard


@dataclass(frozen=True)
class DeepDreamParams:
    """``strength``: the step in pixel units (the gradient is divided by its mean |value|)."""

    layer: str | None = None
    octaves: int = bounded(3, 1, 8)
    octave_scale: float = bounded(1.4, 1.05, 2.0)
    steps: int = bounded(20, 1, MAX_STEPS)  # per octave
    strength: float = bounded(0.01, 1e-4, 0.2)
    jitter: int = bounded(4, 0, 64)
    size: int = bounded(256, 32, MAX_SYNTHESIS_SIZE)
    seed: int = seed_field()


def _resize(x: Tensor, shape: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)


@technique(name="deepdream", title="DeepDream", family="synthesis", params=DeepDreamParams, inputs=("image",),
           layer="spatial", default_layer="middle_spatial", order=50, reference="Mordvintsev et al. 2015",
           outputs=(Image("original", "original"), Image("result", "dreamed ({octaves:.0f} octaves)", role="primary"),
                    Scalar("octaves", "octaves run, coarse to fine", integer=True), STEPS,
                    Series("layer_l2", "L2 norm of the layer's activations per step, octave after octave"),
                    Scalar("initial_layer_l2", "L2 norm of the layer's activations at the first step"),
                    Scalar("final_layer_l2", "L2 norm of the layer's activations at the last step")))
def deepdream(loaded: LoadedModel, inputs: Inputs, target: int | None,
              params: DeepDreamParams = DeepDreamParams(), progress: Progress | None = None) -> Synthesis:
    """``result`` the dreamed image, ``original`` the input (both ``size`` on the longer side)."""
    assert params.layer is not None
    original = fit(inputs["image"], params.size).to(loaded.device)
    full = original.shape[-2:]
    shapes = [tuple(max(16, round(s / params.octave_scale ** k)) for s in full) for k in range(params.octaves)][::-1]
    total = params.steps * len(shapes)
    image = _resize(original, shapes[0])  # type: ignore[arg-type]
    runs: list[LoopResult] = []
    for k, shape in enumerate(shapes):
        if k > 0:  # upscale the dream and put back the detail the smaller octave could not hold
            lost = _resize(original, shape) - _resize(_resize(original, shapes[k - 1]), shape)  # type: ignore[arg-type]
            image = (_resize(image, shape) + lost).clamp(0, 1)  # type: ignore[arg-type]
        run = optimize(loaded.net, PixelImage(image), obj.layer_l2(params.layer), params.steps, lr=params.strength,
                       optimizer="normalized", to_input=loaded.preprocessing.normalize,
                       transforms=standard(jitter_px=params.jitter), seed=params.seed + k,
                       progress=stage(progress, k * params.steps, total), preview_every=5)
        runs.append(run)
        image = run.image
        if run.cancelled:
            break
    return synthesis({"result": image, "original": original}, history_of(*runs),
                     {**totals(*runs), "octaves": float(len(runs)),
                      "final_layer_l2": runs[-1].final.get("layer_l2", 0.0),
                      "initial_layer_l2": runs[0].history["layer_l2"][0] if runs[0].history else 0.0})
