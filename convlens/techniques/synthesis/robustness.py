"""A model's measured robustness curve: the share of held-out images the fooling attack reaches within each L∞
budget (docs/benchmarks.md "Fooling images"; Carlini & Wagner 2017 on reporting a curve, not one budget). It is
measured by :func:`measure_curve` (``bench/fooling_curve.py`` offline, or the ``fooling_curve`` technique over a
dataset; about a minute per 100 images and budget on one thread) and kept beside the weights it was measured on:
``fooling_curve.json`` in the built-in package or in a registered model's folder, or measured from the product,
``<data dir>/.fooling_curves/<weights sha256>.json``. A curve whose ``weights_sha256`` differs from the weights now
loaded is ignored (retrained weights)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convlens.models import LoadedModel, find_weights
from convlens.results import Cancelled, Progress

CURVE_FILE = "fooling_curve.json"
MEASURED_DIR = ".fooling_curves"  # under the data dir; the dot keeps it out of the dataset listing
BUILTIN_CURVES = Path(__file__).resolve().parents[2] / "builtin"  # the built-in models' curves: <name>_<file>


@dataclass(frozen=True)
class Curve:
    """``budgets`` (/255, ascending from 0) and ``fooled``, the share of ``images`` fooled within each: a step
    function that rises at each image's smallest fooling change found (the last budget is the largest tried)."""

    budgets: tuple[float, ...]
    fooled: tuple[float, ...]
    images: int
    targets: str  # how each image's target class was chosen

    def series(self) -> tuple[list[float], list[float]]:
        return list(self.budgets), list(self.fooled)

    def at(self, budget: float) -> float:
        """The share fooled within ``budget`` (/255)."""
        return max((f for b, f in zip(self.budgets, self.fooled, strict=True) if b <= budget + 1e-6), default=0.0)


def from_smallest(smallest: Sequence[float | None], largest_budget: float, targets: str) -> Curve:
    """The curve of each image's smallest fooling change found (/255; None where none within
    ``largest_budget``): the empirical distribution function of those changes."""
    found = sorted(s for s in smallest if s is not None and math.isfinite(s))
    n = len(smallest)
    budgets = [0.0, *found, largest_budget]
    fooled = [0.0, *[(k + 1) / n for k in range(len(found))], len(found) / n]
    return Curve(tuple(budgets), tuple(fooled), n, targets)


def curve_path(loaded: LoadedModel) -> Path | None:
    """Where ``loaded``'s curve is kept: beside the built-in package, or in its model folder."""
    if loaded.card is None:
        return BUILTIN_CURVES / f"{loaded.name}_{CURVE_FILE}"
    from convlens.zoo.store import locate

    try:
        return locate(loaded.name)[0] / CURVE_FILE
    except Exception:  # noqa: BLE001 — a model that moved away since it was loaded has no curve
        return None


def weights_sha256(loaded: LoadedModel) -> str | None:
    """The weights file's SHA-256 (a registered model's card has it; else hashed once per loaded model), or None
    when the weights came from no file found."""
    if loaded.card is not None:
        return str(loaded.card.weights_sha256)
    from convlens.corpus.codes import weights_digest

    return None if find_weights(loaded.name) is None else weights_digest(loaded)


def measured_path(sha256: str) -> Path:
    """Where a curve measured from the product is kept: the data dir, keyed by the weights' SHA-256."""
    from convlens.corpus.datasets import data_dir

    return data_dir() / MEASURED_DIR / f"{sha256}.json"


def measured_curve(loaded: LoadedModel) -> Curve | None:
    """The curve measured on these weights, or None (none measured, random weights, or other weights): the one
    shipped beside the weights first, else one measured from the product."""
    sha = weights_sha256(loaded) if loaded.weights != "random" else None
    if sha is None:
        return None
    for path in (curve_path(loaded), measured_path(sha)):
        if path is None or not path.is_file():
            continue
        data = _read(str(path), path.stat().st_mtime_ns)
        if data.get("weights_sha256") == sha:
            return from_smallest(data["smallest_linf_255"], float(data["largest_budget_255"]), str(data["targets"]))
    return None


@functools.lru_cache(maxsize=8)
def _read(path: str, _mtime_ns: int) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def write_curve(loaded: LoadedModel, smallest: Sequence[float | None], largest_budget: float, targets: str,
                steps: int, path: Path | None = None) -> Path:
    """Keep a measured curve beside ``loaded``'s weights (``path`` overrides where)."""
    path = path or curve_path(loaded)
    if path is None:
        raise ValueError(f"no place to keep {loaded.name}'s curve")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": loaded.name, "weights_sha256": weights_sha256(loaded),
                                "largest_budget_255": largest_budget, "steps": steps, "targets": targets,
                                "smallest_linf_255": [None if s is None else round(s, 3) for s in smallest]},
                               indent=1) + "\n")
    return path


def keep_measured(loaded: LoadedModel, smallest: Sequence[float | None], largest_budget: float, targets: str,
                  steps: int) -> Path | None:
    """Keep a curve measured from the product under the data dir (never inside the installed package), so later
    fooling answers on the same weights carry it; None for weights with no SHA-256 (random, unknown file)."""
    sha = weights_sha256(loaded) if loaded.weights != "random" else None
    if sha is None:
        return None
    return write_curve(loaded, smallest, largest_budget, targets, steps, path=measured_path(sha))


def other_class(classes: int, avoid: int, generator: torch.Generator) -> int:
    """A seeded uniformly random class other than ``avoid``."""
    target = int(torch.randint(0, classes - 1, (1,), generator=generator))
    return target + int(target >= avoid)


def measure_curve(loaded: LoadedModel, pictures: Tensor, labels: Sequence[int], budgets: Sequence[float],
                  steps: int = 100, progress: Progress | None = None, seed: int = 0) -> list[float | None]:
    """Each picture's smallest fooling change found (/255; None where no run fooled it): ``pictures`` (N, 3, S, S)
    in [0, 1] at the model's input size, each attacked (:func:`fooling.fool`) towards a seeded random class other
    than ``labels[i]`` within each of ``budgets`` (/255) and ``steps``; several budgets, since shrinking from a
    wide one stops above what a run within a narrower one finds. ``progress`` sees (image, N) before each image and
    at the end; when it raises :class:`Cancelled` the images not reached are dropped (the list is shorter)."""
    from convlens.techniques.synthesis.common import predict
    from convlens.techniques.synthesis.fooling import FoolingParams, fool  # it imports this module

    generator = torch.Generator().manual_seed(seed)
    found: list[float | None] = []
    for i in range(len(pictures)):
        if not _reported(progress, i, len(pictures)):
            return found
        x = pictures[i:i + 1].float().to(loaded.device)
        target = other_class(len(loaded.classes), int(labels[i]), generator)
        changes = []
        for budget in budgets:
            fooled = fool(loaded, x, target, FoolingParams(epsilon=float(budget), steps=steps, seed=seed))
            if predict(loaded, fooled.best.image)[0] == target:
                changes.append(float((fooled.best.image - x).abs().max()) * 255)
        found.append(min(changes, default=None))
    _reported(progress, len(pictures), len(pictures))
    return found


def _reported(progress: Progress | None, done: int, total: int) -> bool:
    """Report ``done`` of ``total`` images; False once cancelled."""
    try:
        if progress is not None:
            progress(done, total, None)
    except Cancelled:
        return False
    return True
