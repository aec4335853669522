"""Adaptive window refinement for occlusion: spend windows where the map changes.

The windows form a lattice of R × C positions. Every second position in each direction (plus the last) is
always run: with a stride of at most half the window these *coarse* windows still cover every pixel, so no
object can hide between them. Each cell of the coarse lattice whose four corner scores differ by more than
``tolerance`` × the image's range of coarse scores is run in full; the other cells' windows are bilinearly
interpolated from their corners (the same idea as adaptive mesh refinement; Krypton's "adaptive drill-down",
Nakandala et al. 2019 §4.2, spends its fine windows by score instead).

The guard (:mod:`.guard`) predicts what the interpolation cost the map from a sample of interpolated windows
run exactly, which then join the map, and the image is finished exactly when the predicted correlation with
the full map (a 95 % lower bound) falls below 0.99.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from convlens.techniques.attribution import guard

CHECK_WINDOWS = 12
Position = tuple[int, int]


def coarse_indices(n: int) -> list[int]:
    """Every second lattice index along a side of ``n`` positions, and the last."""
    out = list(range(0, n, 2))
    if out[-1] != n - 1:
        out.append(n - 1)
    return out


def coarse(rows: int, cols: int) -> list[Position]:
    return [(r, c) for r in coarse_indices(rows) for c in coarse_indices(cols)]


def cells(rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of every cell of the coarse lattice (corners included)."""
    def spans(n: int) -> list[tuple[int, int]]:
        idx = coarse_indices(n)
        # a side of one position: cells of one row or column
        return list(zip(idx, idx[1:], strict=False)) or [(0, 0)]

    return [(r0, r1, c0, c1) for r0, r1 in spans(rows) for c0, c1 in spans(cols)]


def to_refine(score: Tensor, tolerance: float) -> list[Position]:
    """Positions of the cells whose corner scores spread more than ``tolerance`` × the coarse range.
    ``score``: (R, C), valid at the coarse positions."""
    rows, cols = score.shape
    corners = score[coarse_indices(rows)][:, coarse_indices(cols)]
    span = float(corners.max() - corners.min())
    out: set[Position] = set()
    for r0, r1, c0, c1 in cells(rows, cols):
        quad = score[[r0, r0, r1, r1], [c0, c1, c0, c1]]
        if float(quad.max() - quad.min()) > tolerance * span:
            out.update((r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
    return sorted(out)


def interpolate(values: Tensor, known: Tensor) -> Tensor:
    """Fill the unknown positions of ``values`` (R, C, K) bilinearly from their cell's corners (all known)."""
    rows, cols = known.shape
    out = values.clone()
    for r0, r1, c0, c1 in cells(rows, cols):
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                if known[r, c]:
                    continue
                u = (r - r0) / max(r1 - r0, 1)
                v = (c - c0) / max(c1 - c0, 1)
                out[r, c] = ((1 - u) * (1 - v) * values[r0, c0] + (1 - u) * v * values[r0, c1]
                             + u * (1 - v) * values[r1, c0] + u * v * values[r1, c1])
    return out


def refine(rows: int, cols: int, tolerance: float, run: Callable[[list[Position]], Tensor],
           score: Callable[[Tensor], Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Window outputs (R, C, K) from as few runs as the map allows. ``run(positions)`` returns the (P, K)
    outputs of those windows; ``score(outputs)`` their scalar score (the map's quantity, e.g. the target's
    probability). Returns the outputs and ``{"windows_run": ..., "refined": 1 if kept else 0}``."""
    known = torch.zeros(rows, cols, dtype=torch.bool)
    values: Tensor | None = None

    def evaluate(positions: list[Position]) -> None:
        nonlocal values
        todo = [p for p in positions if not known[p]]
        if not todo:
            return
        out = run(todo)
        if values is None:
            values = out.new_zeros(rows, cols, out.shape[1])
        idx = torch.tensor(todo)
        values[idx[:, 0], idx[:, 1]] = out
        known[idx[:, 0], idx[:, 1]] = True

    evaluate(coarse(rows, cols))
    assert values is not None
    evaluate(to_refine(score(values.flatten(0, 1)).view(rows, cols), tolerance))
    guess = interpolate(values, known)
    unknown = (~known).nonzero().tolist()
    sample = [tuple(p) for p in guard.stratified(unknown, CHECK_WINDOWS)]
    evaluate(sample)  # type: ignore[arg-type]
    sampled = torch.tensor(sample, dtype=torch.long).view(-1, 2)
    errors = score(values[sampled[:, 0], sampled[:, 1]]) - score(guess[sampled[:, 0], sampled[:, 1]])
    refined = interpolate(values, known)
    kept = guard.trusted(score(refined.flatten(0, 1)), errors, int((~known).sum()))
    if not kept:
        evaluate([(r, c) for r in range(rows) for c in range(cols)])
        refined = values
    return refined, {"windows_run": float(known.sum()), "refined": float(kept)}
