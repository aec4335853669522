"""Feature inversion (Mahendran & Vedaldi 2015): x* = argmin ‖φ(x) − φ(x₀)‖²/‖φ(x₀)‖² + λ·TV^β(x), from
one layer, or from several layers shallow to deep at once (one image per layer in one batch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from convlens.hooks import capture
from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_SYNTHESIS_SIZE
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import STEPS, Inputs, gallery, loop_scalars, square, synthesis, term
from convlens.techniques.synthesis.loop import LoopResult, optimize
from convlens.techniques.synthesis.param import PixelImage
from convlens.techniques.synthesis.quality import psnr, ssim
from convlens.techniques.synthesis.transforms import standard


@dataclass(frozen=True)
class InversionParams:
    """``tv_weight`` is λ of the total-variation regulariser (β = 2); 0 turns it off."""

    layer: str | None = None
    steps: int = bounded(300, 1, MAX_STEPS)
    lr: float = bounded(0.05, 1e-4, 1.0)
    tv_weight: float = bounded(0.5, 0.0, 100.0)
    size: int | None = bounded(None, 16, MAX_SYNTHESIS_SIZE)
    jitter: int = bounded(0, 0, 16)
    seed: int = seed_field()


@dataclass(frozen=True)
class InversionLadderParams:
    """``layers``: how many spatial layers, evenly spaced from the first to the deepest."""

    layers: int = bounded(6, 2, 12)
    steps: int = bounded(300, 1, MAX_STEPS)
    lr: float = bounded(0.05, 1e-4, 1.0)
    tv_weight: float = bounded(0.5, 0.0, 100.0)
    size: int | None = bounded(None, 16, MAX_SYNTHESIS_SIZE)
    seed: int = seed_field()


def invert(loaded: LoadedModel, x: Tensor, layers: list[str], steps: int, lr: float, tv_weight: float, seed: int,
           jitter: int = 0, progress: Progress | None = None) -> LoopResult:
    """Reconstruct ``x`` (1, 3, S, S) once per layer: image k of the batch matches layer k's features."""
    n = len(layers)
    with torch.no_grad(), capture(loaded.net, layers, detach=True) as captured:
        loaded.net(loaded.preprocessing.normalize(x))
    objective = obj.Objective()
    for k, layer in enumerate(layers):
        mask = torch.zeros(n, device=x.device)
        mask[k] = 1.0
        objective = objective + obj.feature_distance(layer, captured[layer], name=f"distance_{layer}").per_image(mask)
    if tv_weight > 0:
        objective = objective + tv_weight * obj.total_variation()
    generator = torch.Generator().manual_seed(seed)
    init = (0.5 + 0.02 * torch.randn((n, *x.shape[1:]), generator=generator)).to(x.device)
    return optimize(loaded.net, PixelImage(init), objective, steps, lr=lr, to_input=loaded.preprocessing.normalize,
                    transforms=standard(jitter_px=jitter), seed=seed, progress=progress)


def _fidelity(run: LoopResult, x: Tensor, k: int) -> dict[str, float]:
    return {"psnr": psnr(run.image[k], x[0]), "ssim": ssim(run.image[k], x[0])}


@technique(name="inversion", page="inversion", title="Feature inversion", family="synthesis", params=InversionParams,
           inputs=("image",), layer="spatial", default_layer="middle_spatial", order=40,
           reference="Mahendran & Vedaldi 2015", outputs=(
               Image("original", "original"),
               Image("result", "reconstruction: PSNR {psnr:.1f} dB, SSIM {ssim:.2f}", role="primary"),
               Scalar("psnr", "peak signal-to-noise ratio of the reconstruction", "dB", role="headline"),
               Scalar("ssim", "structural similarity of the reconstruction (1: identical)", role="headline"),
               STEPS, *term("distance_{layer}", "relative feature distance at {layer}"),
               *term("total_variation", "total variation (when tv_weight > 0)", optional=True)))
def feature_inversion(loaded: LoadedModel, inputs: Inputs, target: int | None,
                      params: InversionParams = InversionParams(), progress: Progress | None = None) -> Synthesis:
    """``result``: the reconstruction from ``layer``; ``original``: the image it inverts."""
    assert params.layer is not None
    x = square(inputs["image"], params.size or loaded.preprocessing.input_size).to(loaded.device)
    run = invert(loaded, x, [params.layer], params.steps, params.lr, params.tv_weight, params.seed,
                 params.jitter, progress)
    return synthesis({"result": run.image, "original": x}, run.history, {**loop_scalars(run), **_fidelity(run, x, 0)})


def ladder_layers(loaded: LoadedModel, count: int) -> list[str]:
    spatial = loaded.spatial_activations
    if len(spatial) <= count:
        return spatial
    picks = sorted({round(i * (len(spatial) - 1) / (count - 1)) for i in range(count)})
    return [spatial[i] for i in picks]


@technique(name="inversion_ladder", page="inversion", title="Inversion, shallow to deep", family="synthesis",
           params=InversionLadderParams, inputs=("image",), endpoint="inversion", order=41,
           reference="Mahendran & Vedaldi 2015, fig. 6", outputs=(
               Image("result", "original, then reconstructions from {layers}", kind="grid", role="primary"),
               Image("original", "original"),
               Image("layer_{layer}", "reconstruction from {layer}"),
               Label("layers", "the layers reconstructed from, shallow to deep"),
               Scalar("psnr_{layer}", "PSNR of the reconstruction from {layer}", "dB"),
               Scalar("ssim_{layer}", "SSIM of the reconstruction from {layer} (1: identical)"),
               STEPS, *term("distance_{layer}", "relative feature distance at {layer}"),
               *term("total_variation", "total variation (when tv_weight > 0)", optional=True)))
def inversion_ladder(loaded: LoadedModel, inputs: Inputs, target: int | None,
                     params: InversionLadderParams = InversionLadderParams(), progress: Progress | None = None
                     ) -> Synthesis:
    """``result``: a row of reconstructions from shallow to deep layers; ``layer_<name>`` each one."""
    x = square(inputs["image"], params.size or loaded.preprocessing.input_size).to(loaded.device)
    layers = ladder_layers(loaded, params.layers)
    run = invert(loaded, x, layers, params.steps, params.lr, params.tv_weight, params.seed, 0, progress)
    scalars = loop_scalars(run)
    for k, layer in enumerate(layers):
        scalars.update({f"{key}_{layer}": v for key, v in _fidelity(run, x, k).items()})
    tiles = torch.cat([x, run.image])
    return synthesis({"result": gallery(tiles, columns=len(tiles)), "original": x,
                      **{f"layer_{layer}": run.image[k] for k, layer in enumerate(layers)}},
                     run.history, scalars, {"layers": ", ".join(layers)})
