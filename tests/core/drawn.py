"""Shapes and textures drawn the way a user draws them: PIL ``ImageDraw`` on flat or gradient
backgrounds, at 64–256 px, with their object masks. Not the built-in generator's renderer."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from convlens.builtin.dataset import CLASSES


@dataclass(frozen=True)
class Drawing:
    image: Image.Image
    mask: np.ndarray  # (H, W) bool
    label: int


def _colours(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """``n`` colours far apart (Euclidean distance ≥ 140 in 0–255 RGB)."""
    out: list[np.ndarray] = []
    while len(out) < n:
        c = rng.integers(0, 256, 3)
        if all(np.linalg.norm(c - o) >= 140 for o in out):
            out.append(c)
    return [tuple(int(v) for v in c) for c in out]  # type: ignore[misc]


def _background(size: int, colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (size, size), colour)
    if rng.random() < 0.5:  # a linear gradient, as a drawing program makes it
        ramp = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(20, 50)
        arr = np.clip(np.asarray(img, dtype=float) + ramp, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr if rng.random() < 0.5 else arr.transpose(1, 0, 2).copy())
    return img


def _polygon(cx: float, cy: float, r: float, angles: list[float]) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


SHAPES = ("circle", "square", "triangle", "cross", "ring")


def _draw_shape(name: str, d: ImageDraw.ImageDraw, m: ImageDraw.ImageDraw, circle: tuple[float, float, float],
                turn: float, colours: tuple[tuple[int, int, int], tuple[int, int, int]],
                rng: np.random.Generator) -> None:
    """One of the solid shapes inside ``circle`` (centre x, y and radius), on the image (``d``) and its mask."""
    fg, bg = colours
    cx, cy, r = circle
    box = (cx - r, cy - r, cx + r, cy + r)
    if name == "circle":
        for draw_on, c in ((d, fg), (m, 255)):
            draw_on.ellipse(box, fill=c)
    elif name == "square":
        pts = _polygon(cx, cy, r * 1.2, [turn + k * math.pi / 2 for k in range(4)]) if rng.random() < 0.5 else \
            [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
        for draw_on, c in ((d, fg), (m, 255)):
            draw_on.polygon(pts, fill=c)
    elif name == "triangle":
        kind = rng.integers(3)
        if kind == 0:  # equilateral, any rotation
            pts = _polygon(cx, cy, r * 1.2, [turn + k * 2 * math.pi / 3 for k in range(3)])
        elif kind == 1:  # isosceles, apex up
            pts = [(cx, cy - r * 1.1), (cx + r * rng.uniform(0.7, 1.1), cy + r),
                   (cx - r * rng.uniform(0.7, 1.1), cy + r)]
        else:  # right-angled
            pts = [(cx - r, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
        for draw_on, c in ((d, fg), (m, 255)):
            draw_on.polygon(pts, fill=c)
    elif name == "cross":
        arm = r * rng.uniform(0.3, 0.42)
        for draw_on, c in ((d, fg), (m, 255)):
            draw_on.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=c)
            draw_on.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=c)
    elif name == "ring":
        inner = r * rng.uniform(0.45, 0.6)
        d.ellipse(box, fill=fg)
        d.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=bg)
        m.ellipse(box, fill=255)


def _draw_texture(name: str, img: Image.Image, box: tuple[float, float, float, float],
                  colours: tuple[tuple[int, int, int], tuple[int, int, int]], rng: np.random.Generator) -> Image.Image:
    """One of the textures, pasted on ``img`` inside a square or round region (returned as the mask)."""
    size = img.width
    fg, fg2 = colours
    period = rng.uniform(max(8.0, size / 16), size / 5)  # 4–12 px at the 64-px model input
    half = period / 2
    patch = Image.new("RGB", (size, size), fg)
    pd = ImageDraw.Draw(patch)
    if name in ("horizontal_stripes", "vertical_stripes", "diagonal_stripes"):
        for k in range(-2 * size, 2 * size, max(2, round(period))):
            if name == "horizontal_stripes":
                pd.rectangle((0, k, size, k + half), fill=fg2)
            elif name == "vertical_stripes":
                pd.rectangle((k, 0, k + half, size), fill=fg2)
            else:
                w = half * math.sqrt(2)
                sign = 1 if rng.random() < 0.5 else -1
                if sign > 0:
                    pd.polygon([(k, 0), (k + w, 0), (k + w + size, size), (k + size, size)], fill=fg2)
                else:
                    pd.polygon([(k, size), (k + w, size), (k + w + size, 0), (k + size, 0)], fill=fg2)
    elif name == "checkerboard":
        step = max(2, round(half))
        for yy in range(0, size, step):
            for xx in range(0, size, step):
                if (yy // step + xx // step) % 2:
                    pd.rectangle((xx, yy, xx + step - 1, yy + step - 1), fill=fg2)
    else:  # dots
        dot = period * rng.uniform(0.22, 0.32)
        for yy in np.arange(period / 2, size, period):
            for xx in np.arange(period / 2, size, period):
                pd.ellipse((xx - dot, yy - dot, xx + dot, yy + dot), fill=fg2)
    region = Image.new("L", (size, size), 0)
    rd = ImageDraw.Draw(region)
    if rng.random() < 0.5:
        rd.rectangle(box, fill=255)
    else:
        rd.ellipse(box, fill=255)
    img.paste(patch, (0, 0), region)
    return region


def draw(label: int, size: int, rng: np.random.Generator) -> Drawing:
    name = CLASSES[label]
    bg, fg, fg2 = _colours(rng, 3)
    img = _background(size, bg, rng)
    mask_img = Image.new("L", (size, size), 0)
    d, m = ImageDraw.Draw(img), ImageDraw.Draw(mask_img)
    r = size * rng.uniform(0.22, 0.36)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    turn = rng.uniform(0, 2 * math.pi)
    if name in SHAPES:
        _draw_shape(name, d, m, (cx, cy, r), turn, (fg, bg), rng)
    else:
        mask_img = _draw_texture(name, img, box, (fg, fg2), rng)
    return Drawing(img, np.asarray(mask_img) >= 128, label)


def drawn_set(seed: int, per_class: int, sizes: tuple[int, ...] = (64, 96, 128, 192, 256)) -> list[Drawing]:
    rng = np.random.default_rng(seed)
    return [draw(label, int(sizes[k % len(sizes)]), rng) for k in range(per_class) for label in range(len(CLASSES))]
