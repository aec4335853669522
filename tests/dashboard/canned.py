"""Canned answers generated from the techniques' declared outputs (the real registry), for the fake client.

Every non-optional declared output is present (patterns expanded with :data:`PLACEHOLDERS`), values come from
:data:`VALUES` where a page test checks them, and whatever a fake method adds (optional outputs, items shaped
like the server's) is checked against the declaration: a key no technique declares fails the test, so a
renamed key fails here rather than in production.
"""

from __future__ import annotations

import base64
import io
import itertools
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image

from convlens import registry
from convlens.outputs import Declared

CLASSES = ("circle", "square", "triangle", "cross", "ring", "horizontal_stripes", "vertical_stripes",
           "diagonal_stripes", "checkerboard", "dots")
# Values the page tests check (by output name; a pattern's keys share its default).
VALUES: dict[str, Any] = {
    "steps": 10.0, "seconds": 1.5, "target_probability": 0.97, "psnr": 21.0, "ssim": 0.8, "octaves": 3.0,
    "gram_reduction": 0.98, "style_loss": 0.2, "content_loss": 0.3, "original_probability": 0.9,
    "result_probability": 0.6, "linf_255": 3.0, "fooled": 1.0, "steps_to_fool": 4.0, "minimising_rounds": 6.0,
    "cached_cells": 0.0, "channels": 6.0, "dead_channels": 1.0, "height": 8.0, "width": 8.0, "shown": 6.0,
    "filters": 32.0, "kernel_height": 7.0, "kernel_width": 7.0, "grid_pad": 2.0, "{grid}_tile_height": 24.0,
    "{grid}_tile_width": 24.0, "{grid}_columns": 3.0, "pointing_game": 0.9, "insertion_auc": 0.8,
    "deletion_auc": 0.3, "images": 6.0, "fitted": 6.0, "dim": 128.0, "codes_cached": 1.0, "projection_cached": 0.0,
    "projection_seconds": 1.5, "psnr_{layer}": 20.0, "score": 1.5, "probability": 0.9,
    "original_label": "ring", "network": "random VGG (test)", "layers": "features.2, features.16",
    "colormap": "inferno", "map_low": 0.0, "map_high": 0.25, "map_min": -0.01, "map_max": 0.25, "map_normalised": 1.0,
    "layer_min": 0.0, "layer_max": 4.0,
}
PLACEHOLDERS: dict[str, tuple[str, ...]] = {"layer": ("features.2", "features.16"), "k": ("2",), "grid": ("grid",),
                                            "channel": ("0", "1", "2"), "index": ("0",), "row": ("0", "1"),
                                            "col": ("0", "1", "2"), "signed": ("logit_drop",)}


def b64png(colour: tuple[int, int, int], mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (64, 64), colour if mode == "RGB" else colour[0]).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _colour(key: str) -> tuple[int, int, int]:
    h = zlib.crc32(key.encode())
    return h & 255, (h >> 8) & 255, (h >> 16) & 255


def expand(declared: Declared, placeholders: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The keys a declaration stands for in a canned answer."""
    names = declared.placeholders
    if not names:
        return [declared.name]
    return [declared.name.format(**dict(zip(names, values, strict=True)))
            for values in itertools.product(*(placeholders.get(n, PLACEHOLDERS.get(n, ("0",))) for n in names))]


def _value(declared: Declared, key: str, labels: Mapping[str, str]) -> Any:
    if declared.section == "images":
        return b64png(_colour(key))
    if declared.section == "series":
        return [[1.0, 2.0], [0.5, 0.2]]
    if declared.section == "labels":
        return labels.get(key, VALUES.get(declared.name, key.replace("_", " ")))
    return float(VALUES.get(key, VALUES.get(declared.name, 2.0)))


def sections(name: str, labels: Mapping[str, str] | None = None,
             placeholders: Mapping[str, tuple[str, ...]] | None = None, rows: list[dict[str, Any]] | None = None,
             **extra: Mapping[str, Any]) -> dict[str, Any]:
    """``name``'s answer by section: every non-optional declared output, then ``extra`` (section → values) on
    top, and ``rows`` as its items (completed with every non-optional declared field); a key or an item field
    that ``name`` does not declare fails."""
    outputs = registry.get(name).declared
    out: dict[str, Any] = {"images": {}, "scalars": {}, "labels": {}, "series": {}, "columns": {}}
    for declared in outputs.declared:
        if declared.optional or declared.section in ("items", "columns"):  # columns: the fake gives them (extra)
            continue
        for key in expand(declared, placeholders or {}):
            out[declared.section][key] = _value(declared, key, labels or {})
    for section, values in extra.items():
        out[section] = {**out[section], **values}
    outputs.check(name, out)  # type: ignore[arg-type]
    fields = [d.name for d in outputs.of("items")]
    needed = [d.name for d in outputs.of("items") if not d.optional]
    out["items"] = [{**{f: k if f != "label" else CLASSES[k % 2] for f in needed}, **row}
                    for k, row in enumerate(rows or [])]
    undeclared = {f for item in out["items"] for f in item} - set(fields)
    assert not undeclared, f"{name}: the fake's items hold undeclared fields {sorted(undeclared)}"
    return out
