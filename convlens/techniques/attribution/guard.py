"""How far a cheaper occlusion map can be trusted: its correlation with the exact map, predicted from a sample of
its windows run exactly.

The cheaper map's window scores are the exact ones plus errors. For errors independent of the scores (no
better assumption is available without running every window), a map whose ``a`` of ``n`` windows carry errors of
mean square ``mse`` correlates ``1 / sqrt(1 + mse × a / (n × var))`` with the exact map, ``var`` the exact
scores' variance. The guard uses an upper confidence bound on ``mse`` from the ``m`` sampled errors (χ² with
``m`` degrees of freedom, Wilson–Hilferty's quantile), so a lucky sample cannot pass a poor map: with 10
samples the bound is 2.5× the sample's mean square. The sample must be unbiased (:func:`stratified`): an evenly
spaced one over a lattice once passed a map at 0.9865 with a bound of 0.9946, its windows falling where the
errors were small.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")

MIN_CORRELATION = 0.99
CONFIDENCE_Z = 1.645  # one-sided 95 %


def chi2_lower_quantile(dof: int, z: float = CONFIDENCE_Z) -> float:
    """The χ² quantile with ``dof`` degrees of freedom that a draw falls below with probability Φ(−z)
    (Wilson & Hilferty 1931; within 1 % of the exact quantile for dof ≥ 8, below it for fewer)."""
    c = 2.0 / (9.0 * dof)
    return dof * max(1.0 - c - z * math.sqrt(c), 1e-6) ** 3


def correlation(scores: Tensor, errors: Tensor, approximated: int, bound: bool = True) -> float:
    """Predicted correlation of a map of window ``scores`` (n,) with the exact one, ``approximated`` of them still
    cheap, from ``errors`` (m,) = cheap − exact on sampled windows; ``bound``: a 95 % lower bound, else the
    point estimate."""
    if approximated == 0:
        return 1.0
    variance = float(scores.double().var()) if scores.numel() > 1 else 0.0
    return correlation_of(variance, errors, approximated / scores.numel(), bound)


def correlation_of(variance: float, errors: Tensor, weight: float, bound: bool = True) -> float:
    """Predicted correlation with the exact map of a map of ``variance`` whose error variance is ``weight`` × the
    mean square of the windows' errors, sampled by ``errors`` (m,). For a map of window scores, ``weight`` is the
    share of windows left cheap; for a map of pixels, each the mean of the n_p windows covering it, it is the
    pixels' mean of (cheap windows covering p) / n_p² (independent errors)."""
    if weight == 0.0:
        return 1.0
    m = errors.numel()
    if m == 0:
        return 0.0
    mse = float(errors.double().square().sum()) / (chi2_lower_quantile(m) if bound else m)
    noise = mse * weight
    var = variance - noise
    if var <= 0.0:
        return 1.0 if mse == 0.0 else 0.0
    return 1.0 / math.sqrt(1.0 + noise / var)


def stratified(items: list[T], k: int) -> list[T]:
    """One item drawn at random from each of ``k`` equal runs of ``items`` (all of them if fewer): an unbiased
    sample of their mean that still covers the whole lattice. Seeded, so a map never depends on the run."""
    if len(items) <= k:
        return list(items)
    generator = torch.Generator().manual_seed(len(items))
    bounds = [round(j * len(items) / k) for j in range(k + 1)]
    return [items[lo + int(torch.randint(hi - lo, (1,), generator=generator))]
            for lo, hi in zip(bounds, bounds[1:], strict=False)]


def trusted(scores: Tensor, errors: Tensor, approximated: int) -> bool:
    """Is the cheaper window map's correlation with the exact one at least :data:`MIN_CORRELATION` (95 %
    bound)?"""
    return correlation(scores, errors, approximated) >= MIN_CORRELATION
