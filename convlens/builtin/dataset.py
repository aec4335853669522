"""Seeded procedural shapes-and-textures dataset with ground-truth object masks.

Every sample is a pure function of ``(seed, index)``: one object (a solid shape or a
textured patch) on a random, possibly graded background, with a few small non-class
distractors and pixel noise. The object alone decides the label, and its mask is
returned so attribution maps can be scored against it.

Geometry is rendered with approximate signed distances ``d`` (negative inside) and
one-pixel anti-aliasing ``coverage = clip(0.5 - d, 0, 1)``; the mask is ``coverage >= 0.5``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "dots",
)
IMAGE_SIZE = 64
TRAIN_SEED = 0
HELDOUT_SEED = 1
_N_SHAPES = 5  # the first five classes are solid shapes, the rest textured patches
_MIN_OBJ_CONTRAST = 0.55  # Euclidean RGB distance (in [0, 1] units) object vs background
_MIN_TEX_CONTRAST = 0.45  # between the two texture colours, and each of them vs background
_AREA_RANGE = (0.06, 0.3)  # object area as a fraction of the image
_MASK_MIN_COVERAGE = 0.5  # a pixel is in the mask when the object covers at least this much of it


@dataclass(frozen=True)
class Sample:
    """One rendered sample."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, the object's pixels
    label: int


# ----------------------------------------------------------------------------- helpers


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each (size, size) float32."""
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(c, c, indexing="ij")


def _rotate(y: np.ndarray, x: np.ndarray, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame coordinates ``(u, v)`` (u along the rotated x-axis, v along rotated y)."""
    dy, dx = y - cy, x - cx
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _coverage(d: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from an (approximate) signed distance in pixels."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random RGB colour, float32 (3,)."""
    return rng.random(3, dtype=np.float32)


def _colour(rng: np.random.Generator, away_from: list[np.ndarray], min_dist: float) -> np.ndarray:
    """A random RGB colour at least ``min_dist`` (Euclidean) from every colour in ``away_from``."""
    for _ in range(100):
        c = _random_colour(rng)
        if all(np.linalg.norm(c - a) >= min_dist for a in away_from):
            return c
    # Fallback (practically unreachable): the RGB cube corner farthest from the first colour.
    return (away_from[0] < 0.5).astype(np.float32)


def _stripe(t: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Anti-aliased square wave in [0, 1] along coordinate ``t`` (pixels), duty cycle 1/2."""
    s = t / period + phase
    tri = np.abs(np.mod(s + 0.25, 1.0) - 0.5)  # distance (periods) from the stripe centre
    return _coverage(period * (tri - 0.25))


# ----------------------------------------------------------------------------- geometry


SDF = Callable[[np.ndarray, np.ndarray], np.ndarray]  # object-frame (u, v) → signed distance


def _shape_sdf(label: int, area: float, rng: np.random.Generator) -> tuple[SDF, float]:
    """Solid shape ``label`` with the given area (px²) → (signed distance in its frame, bounding radius).

    Every class is sized by area, so the amount of background carries no class information.
    """
    name = CLASSES[label]
    if name == "circle":
        r = np.sqrt(area / np.pi)
        return (lambda u, v: np.hypot(u, v) - r), r
    if name == "ring":
        k = rng.uniform(0.45, 0.58)  # inner / outer radius
        r = np.sqrt(area / (np.pi * (1.0 - k * k)))
        ring_sdf: SDF = lambda u, v: np.maximum(np.hypot(u, v) - r, k * r - np.hypot(u, v))  # noqa: E731
        ring_sdf.silhouette = lambda u, v: np.hypot(u, v) - r  # type: ignore[attr-defined]
        return ring_sdf, r
    if name == "square":
        h = np.sqrt(area) / 2
        return (lambda u, v: np.maximum(np.abs(u), np.abs(v)) - h), h * np.sqrt(2.0)
    if name == "triangle":
        # Equilateral, centroid at the origin; distance = max over the three edge half-planes.
        inradius = np.sqrt(area / (3.0 * np.sqrt(3.0)))
        normals = [(np.cos(a), np.sin(a)) for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]

        def triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            d = [cu * u + cv * v for cu, cv in normals]
            return np.maximum(np.maximum(d[0], d[1]), d[2]) - inradius

        return triangle, 2.0 * inradius
    if name == "cross":
        b = rng.uniform(0.3, 0.38)  # arm half-width / arm half-length
        arm = np.sqrt(area / (8.0 * b - 4.0 * b * b))
        w = b * arm

        def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            au, av = np.abs(u), np.abs(v)
            return np.minimum(np.maximum(au - arm, av - w), np.maximum(au - w, av - arm))

        return cross, np.hypot(arm, w)
    raise ValueError(name)


def _patch_sdf(area: float, rng: np.random.Generator) -> tuple[SDF, float]:
    """Texture patch outline (rectangle, ellipse or rounded rectangle) of the given area."""
    aspect = rng.uniform(0.7, 1.0)
    kind = rng.integers(3)
    if kind == 0:
        hu = np.sqrt(area / (4.0 * aspect))
        hv = aspect * hu
        return (lambda u, v: np.maximum(np.abs(u) - hu, np.abs(v) - hv)), np.hypot(hu, hv)
    if kind == 1:
        hu = np.sqrt(area / (np.pi * aspect))
        hv = aspect * hu
        return (lambda u, v: (np.hypot(u / hu, v / hv) - 1.0) * hv), hu
    c = rng.uniform(0.3, 0.6)  # corner radius / short half-side
    hu = np.sqrt(area / (4.0 * aspect - (4.0 - np.pi) * (c * aspect) ** 2))
    hv = aspect * hu
    rad = c * hv

    def rounded(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        qu, qv = np.abs(u) - hu + rad, np.abs(v) - hv + rad
        outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
        return outside + np.minimum(np.maximum(qu, qv), 0.0) - rad

    return rounded, np.hypot(hu, hv)


def _texture(label: int, y: np.ndarray, x: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """Texture ``label`` as a blend weight in [0, 1] (0 = first colour, 1 = second colour)."""
    name = CLASSES[label]
    phase = rng.random()
    jitter = np.deg2rad(rng.uniform(-12.0, 12.0))
    if name == "horizontal_stripes":  # stripes run along x, so intensity varies along y
        return _stripe(np.cos(jitter) * y + np.sin(jitter) * x, period, phase)
    if name == "vertical_stripes":
        return _stripe(np.cos(jitter) * x + np.sin(jitter) * y, period, phase)
    if name == "diagonal_stripes":
        a = np.deg2rad(45.0 if rng.random() < 0.5 else 135.0) + jitter
        return _stripe(np.cos(a) * x + np.sin(a) * y, period, phase)
    if name == "checkerboard":
        u, v = _rotate(y, x, 0.0, 0.0, jitter)
        a, b = _stripe(u, period, phase), _stripe(v, period, rng.random())
        return a * (1.0 - b) + (1.0 - a) * b  # soft XOR
    if name == "dots":
        u, v = _rotate(y, x, 0.0, 0.0, rng.uniform(0.0, np.pi / 2))
        fu = np.mod(u / period + phase, 1.0) - 0.5
        fv = np.mod(v / period + rng.random(), 1.0) - 0.5
        radius = period * rng.uniform(0.2, 0.3)
        return _coverage(period * np.hypot(fu, fv) - radius)
    raise ValueError(name)


# ----------------------------------------------------------------------------- rendering


def _background(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Background image (H, W, 3) float32 and its mean colour (3,)."""
    base = _random_colour(rng)
    img = np.broadcast_to(base, (*y.shape, 3)).copy()
    if rng.random() < 0.5:  # smooth linear gradient of modest amplitude
        a = rng.uniform(0.0, 2 * np.pi)
        ramp = (np.cos(a) * (x - size / 2) + np.sin(a) * (y - size / 2)) / size  # in [-0.71, 0.71]
        delta = rng.normal(0.0, 1.0, 3).astype(np.float32)
        delta *= rng.uniform(0.1, 0.3) / max(float(np.linalg.norm(delta)), 1e-6)
        img = np.clip(img + ramp[..., None] * delta, 0.0, 1.0)
    return img, base


def _add_clutter(
    rng: np.random.Generator,
    img: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    size: int,
    keep_out: tuple[float, float, float],
) -> None:
    """Draw 0-4 small, low-contrast specks and short thin segments in place, away from the object."""
    scale = size / IMAGE_SIZE
    cy0, cx0, radius = keep_out
    for _ in range(rng.integers(0, 5)):
        cy, cx = rng.uniform(2, size - 2, 2)
        if np.hypot(cy - cy0, cx - cx0) < radius + 4 * scale:
            continue  # would touch the object: skip rather than resample (keeps the count random)
        if rng.random() < 0.5:  # speck
            d = np.hypot(y - cy, x - cx) - rng.uniform(0.6, 1.4) * scale
        else:  # thin short segment
            a = rng.uniform(0, np.pi)
            half_len = rng.uniform(1.5, 4.0) * scale
            u, v = _rotate(y, x, cy, cx, a)
            d = np.hypot(np.maximum(np.abs(u) - half_len, 0.0), v) - 0.5 * scale
        alpha = _coverage(d)[..., None] * rng.uniform(0.3, 0.6)
        img += alpha * (rng.random(3, dtype=np.float32) - img)


def render_sample(seed: int, index: int, size: int = IMAGE_SIZE, with_object: bool = True,
                  drawn: bool = False) -> Sample:
    """Render sample ``index`` of stream ``seed``; depends on its arguments only.

    ``with_object=False`` leaves the object out (background, clutter and noise only, empty
    mask): the training script teaches the model that such scenes carry no class.
    """
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASSES)
    y, x = _grid(size)
    img, bg = _background(rng, y, x, size)

    area = rng.uniform(*_AREA_RANGE) * size * size
    if label < _N_SHAPES:
        sdf, bound = _shape_sdf(label, area, rng)
        angle = rng.uniform(0, 2 * np.pi)
    else:
        sdf, bound = _patch_sdf(area, rng)
        angle = np.deg2rad(rng.uniform(-20.0, 20.0)) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    margin = min(bound + 1.0, size / 2)
    cy, cx = rng.uniform(margin, size - margin, 2)
    if not drawn:
        _add_clutter(rng, img, y, x, size, (cy, cx, bound))

    u, v = _rotate(y, x, cy, cx, angle)
    cov = _coverage(sdf(u, v))
    # The mask is the object's silhouette: for the ring it includes the enclosed hole.
    silhouette = getattr(sdf, "silhouette", None)
    mask = (cov if silhouette is None else _coverage(silhouette(u, v))) >= _MASK_MIN_COVERAGE
    if label < _N_SHAPES:
        fill = np.broadcast_to(_colour(rng, [bg], _MIN_OBJ_CONTRAST), img.shape)
    else:
        c1 = _colour(rng, [bg], _MIN_TEX_CONTRAST)
        c2 = _colour(rng, [bg, c1], _MIN_TEX_CONTRAST)
        finest = (3.5 if drawn else 5.0) * size / IMAGE_SIZE  # drawn: periods down to what a 64-px view resolves
        period = max(np.sqrt(area) / rng.uniform(3.0, 6.0 if not drawn else 9.0), finest)
        w = _texture(label, y, x, period, rng)[..., None]
        fill = c1 * (1.0 - w) + c2 * w

    if not with_object:  # drawn all the same: the random stream, hence background and noise, stay identical
        cov = np.zeros_like(cov)
        mask = np.zeros_like(mask)
    img = img + cov[..., None] * (fill - img)
    # Objects carry a fine surface grain; the whole image gets weaker sensor noise.
    grain = rng.normal(0.0, rng.uniform(0.03, 0.07), (size, size, 1)).astype(np.float32) * (not drawn)
    img += cov[..., None] * grain
    img += rng.normal(0.0, rng.uniform(0.02, 0.08), img.shape).astype(np.float32) * (not drawn)
    image = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Sample(image=image, mask=mask, label=label)


def render_batch(
    seed: int, n: int, size: int = IMAGE_SIZE, start: int = 0, with_object: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples ``start .. start+n-1`` → images (N,H,W,3) uint8, masks (N,H,W) bool, labels (N,) int64.

    ``with_object=False`` renders the same scenes without their object (empty masks; the
    labels then name the class that was left out).
    """
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    labels = np.empty(n, dtype=np.int64)
    for k in range(n):
        s = render_sample(seed, start + k, size, with_object)
        images[k], masks[k], labels[k] = s.image, s.mask, s.label
    return images, masks, labels


class ShapesDataset(Dataset):
    """Pre-rendered ``render_batch(seed, n, size)`` as torch tensors.

    Items are ``(image float32 (3,H,W) in [0,1], label int, mask bool (1,H,W))``.
    """

    def __init__(self, seed: int, n: int, size: int = IMAGE_SIZE) -> None:
        images, masks, labels = render_batch(seed, n, size)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (N,3,H,W)
        self.masks = torch.from_numpy(masks).unsqueeze(1)  # bool (N,1,H,W)
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.images[i].float() / 255.0, int(self.labels[i]), self.masks[i]


def render_drawn_batch(seed: int, n: int, start: int, sizes: tuple[int, ...] = (128, 192, 256),
                       size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Flat "drawn" scenes (no clutter, grain or noise; finer textures) rendered at a larger size and
    resized to ``size`` the way the product's preprocessing resizes uploads (PIL bilinear): images
    (N,H,W,3) uint8 and labels (N,). Sample ``start + k`` of stream ``seed`` at ``sizes[k % len]``."""
    from PIL import Image  # lazy: keep package import light

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for k in range(n):
        s = render_sample(seed, start + k, sizes[k % len(sizes)], drawn=True)
        images[k] = np.asarray(Image.fromarray(s.image).resize((size, size), Image.Resampling.BILINEAR))
        labels[k] = s.label
    return images, labels
