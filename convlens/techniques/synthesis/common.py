"""What the synthesis techniques share: their call signature, sizing, progress over several runs, results.

A synthesis technique is ``fn(loaded, inputs, target, params, progress) -> Synthesis`` where ``inputs``
maps the declared image names to (3, H, W) tensors in [0, 1] on the model's device (full resolution,
bounded by the server) and ``target`` is the request's class (None when not given).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from convlens import images
from convlens.models import LoadedModel
from convlens.outputs import Declared, Scalar, Series
from convlens.results import Progress, Synthesis
from convlens.schema import SchemaError
from convlens.techniques.synthesis.loop import LoopResult

Inputs = Mapping[str, Tensor]


def fit(image: Tensor, size: int) -> Tensor:
    """(3, H, W) → (1, 3, h, w) with the longer side ``size``, aspect kept (each side at least 16)."""
    h, w = image.shape[-2:]
    factor = size / max(h, w)
    shape = (max(16, round(h * factor)), max(16, round(w * factor)))
    return F.interpolate(image[None].float(), size=shape, mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def square(image: Tensor, size: int) -> Tensor:
    """(3, H, W) → (1, 3, size, size): the centred square, resized."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[..., top:top + side, left:left + side]
    return F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def required_target(target: int | None, technique: str) -> int:
    if target is None:
        raise SchemaError("target", f"{technique} needs a target class (an index or a label)")
    return target


def stage(progress: Progress | None, done: int, total: int) -> Progress | None:
    """Progress of one run that is a stage of a longer job: steps offset by ``done`` out of ``total``."""
    if progress is None:
        return None

    def report(step: int, _steps: int, preview: Tensor | None) -> None:
        progress(done + step, total, preview)

    return report


def history_of(*runs: LoopResult) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for run in runs:
        for name, values in run.history.items():
            out.setdefault(name, []).extend(values)
    return out


def totals(*runs: LoopResult) -> dict[str, float]:
    """Steps, seconds and cancellation of a job made of several runs (octaves, minimising rounds)."""
    return {"steps": float(sum(r.steps for r in runs)), "seconds": round(sum(r.seconds for r in runs), 4),
            "cancelled": float(any(r.cancelled for r in runs))}


STEPS = Scalar("steps", "steps run", integer=True)


def term(name: str, caption: str, optional: bool = False) -> tuple[Declared, Declared]:
    """The declared outputs of an objective term ``name`` (:func:`loop_scalars`): its curve over the steps and
    its value at the last step (``final_<name>``)."""
    return (Series(name, f"{caption} per step", optional=optional),
            Scalar(f"final_{name}", f"{caption} at the last step", optional=optional))


def loop_scalars(run: LoopResult) -> dict[str, float]:
    return {"steps": float(run.steps), "seconds": round(run.seconds, 4), "cancelled": float(run.cancelled),
            **{f"final_{k}": v for k, v in run.final.items()}}


def predict(loaded: LoadedModel, image: Tensor) -> tuple[int, float]:
    """(class, probability) of the model on a (1, 3, H, W) image in [0, 1]."""
    with torch.no_grad():
        probs = torch.softmax(loaded.net(loaded.preprocessing.normalize(image)).float(), dim=1)[0]
    p, c = probs.max(dim=0)
    return int(c), float(p)


def gallery(tiles: Tensor, columns: int | None = None) -> Tensor:
    """(K, 3, h, w) → one (3, H, W) mosaic."""
    k = tiles.shape[0]
    columns = columns or max(1, min(k, int(k ** 0.5 + 0.999)))
    return images.grid(list(tiles.detach().cpu()), columns, pad=2)


def synthesis(images_out: Mapping[str, Tensor], history: dict[str, list[float]], scalars: dict[str, float],
              labels: Mapping[str, str] | None = None,
              series: Mapping[str, tuple[list[float], list[float]]] | None = None) -> Synthesis:
    """A result with every image as (3, H, W) on the CPU; ``series`` curves other than per-step histories."""
    named = {k: (v[0] if v.ndim == 4 else v).detach().float().cpu().clamp(0, 1) for k, v in images_out.items()}
    return Synthesis(named, history, scalars, dict(labels or {}), dict(series or {}))
