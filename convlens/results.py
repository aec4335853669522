"""One result type per technique family. Techniques return these; :mod:`convlens.render` turns them
into named images and scalars.

Shapes use N for the batch; every image is in [0, 1] unless named *signed*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

# progress(step, total, preview): preview is an image (3, H, W) in [0, 1] or None.
Progress = Callable[[int, int, Tensor | None], None]


class Cancelled(Exception):
    """Raised by a progress callback to stop a long technique; iterative ones return what they have."""


@dataclass(frozen=True)
class Attribution:
    """Attribution family: one heat map per input image.

    map:       (N, H, W) in [0, 1], aligned with the input.
    target:    (N,) the class (or, for a channel objective, the channel) explained.
    score:     (N,) the value explained (an unnormalised class score, a probability, ...).
    logits:    (N, K) the forward pass's class scores (for the top-k, at no extra cost).
    gradient:  (N, 3, H, W) signed input gradient, for techniques that have one.
    raw:       unnormalised map at its native resolution (e.g. Grad-CAM at the layer's grid).
    signed:    named signed maps worth showing, (N, 3, H, W) or (N, H, W) (guided's gradient,
               occlusion's logit drop); rendered centred on zero.
    objective: what was explained, in words.
    """

    map: Tensor
    target: Tensor
    score: Tensor
    logits: Tensor
    gradient: Tensor | None = None
    raw: Tensor | None = None
    objective: str = ""
    scalars: dict[str, float | Tensor] = field(default_factory=dict)  # a tensor holds one value per image
    signed: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Grid:
    """Tiles of equal size laid out row by row.

    tiles:   (K, C, h, w) in [0, 1], C = 1 (grey) or 3 (RGB).
    columns: tiles per row.
    colormap: how grey tiles are coloured.
    items:   one dict of plain values per tile (its channel, statistics, caption).
    """

    tiles: Tensor
    columns: int
    items: list[dict[str, float | int | str]] = field(default_factory=list)
    colormap: str = "viridis"  # for grey tiles; "gray" where the value itself is the picture


@dataclass(frozen=True)
class Grids:
    """Activations family: named grids of one image (or of the weights alone), plus context.

    base:    (3, H, W) the input the grids describe, or None (weights need no image).
    focus:   (h, w) one map in [0, 1] to show large over ``base`` (e.g. a chosen channel), or None.
    """

    grids: dict[str, Grid]
    base: Tensor | None = None
    focus: Tensor | None = None
    scalars: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Synthesis:
    """Synthesis family: images made by optimisation or a generator network.

    images:  named (3, H, W) in [0, 1] (the result first; then e.g. "original", "change").
    history: named per-step scalars (losses), for the charts.
    labels:  named words worth showing (the network that measured, predicted classes).
    series:  named curves as (x, y) lists that are not per step (a robustness curve).
    """

    images: dict[str, Tensor]
    history: dict[str, list[float]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Corpus:
    """Corpus family: what a model makes of a dataset.

    vectors: (N, D) float (CNN codes), or None.
    points:  (N, 2) float (an embedding), or None.
    images:  named pictures (a grid of patches, a curve) (3, H, W) in [0, 1].
    series:  named curves as (x, y) lists, for the charts.
    columns: named (N,) arrays, one value per image (sent compactly, :func:`convlens.outputs.Column`).
    """

    vectors: Tensor | None = None
    points: Tensor | None = None
    images: dict[str, Tensor] = field(default_factory=dict)
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    items: list[dict[str, float | int | str]] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
