"""A model's measured robustness curve: the share of held-out images the fooling attack reaches within each L∞
budget (docs/benchmarks.md "Fooling images"; Carlini & Wagner 2017 on reporting a curve, not one budget). It is
measured offline (``bench/fooling_curve.py``, about a minute per 100 images on one thread) and shipped beside the
weights it was measured on: ``fooling_curve.json`` in the built-in package or in a registered model's folder.
A curve whose ``weights_sha256`` differs from the weights now loaded is ignored (retrained weights)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convlens.models import LoadedModel, find_weights

CURVE_FILE = "fooling_curve.json"
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
    if loaded.card is not None:
        return str(loaded.card.weights_sha256)
    path = find_weights(loaded.name)
    return None if path is None else _sha256(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, _mtime_ns: int) -> str:
    from convlens.zoo.weights import sha256_file

    return sha256_file(Path(path))


def measured_curve(loaded: LoadedModel) -> Curve | None:
    """The curve measured on these weights, or None (none measured, random weights, or other weights)."""
    path = curve_path(loaded)
    if loaded.weights == "random" or path is None or not path.is_file():
        return None
    data = _read(str(path), path.stat().st_mtime_ns)
    if data.get("weights_sha256") != weights_sha256(loaded):
        return None
    return from_smallest(data["smallest_linf_255"], float(data["largest_budget_255"]), str(data["targets"]))


@functools.lru_cache(maxsize=8)
def _read(path: str, _mtime_ns: int) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def write_curve(loaded: LoadedModel, smallest: Sequence[float | None], largest_budget: float, targets: str,
                steps: int, path: Path | None = None) -> Path:
    """Keep a measured curve beside ``loaded``'s weights (``path`` overrides where)."""
    path = path or curve_path(loaded)
    if path is None:
        raise ValueError(f"no place to keep {loaded.name}'s curve")
    path.write_text(json.dumps({"model": loaded.name, "weights_sha256": weights_sha256(loaded),
                                "largest_budget_255": largest_budget, "steps": steps, "targets": targets,
                                "smallest_linf_255": [None if s is None else round(s, 3) for s in smallest]},
                               indent=1) + "\n")
    return path
