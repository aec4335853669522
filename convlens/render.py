"""Results → :class:`Output`, the one answer type: named images (tensors in [0, 1]) and plain values, one
renderer per family.

A family's runner makes the answer's head (technique, model, target, ...) and its renderer fills in what the
technique computed; nothing is copied between types after that. Encoding to PNG happens at the edge (handlers,
CLI); here every image is still a tensor.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from convlens import images, registry
from convlens.outputs import COLUMN_DTYPES
from convlens.registry import Family
from convlens.results import Attribution, Corpus, Grid, Grids, Synthesis

MIN_TILE_PX = 24  # small tiles (an 8×8 map, a 3×3 kernel) are enlarged, nearest-neighbour, to at least this
GRID_PAD = 2


@dataclass(frozen=True)
class Output:
    """One answered request, ready to encode: image tensors in [0, 1], plain values otherwise.

    The sections ``images``, ``scalars``, ``labels``, ``series`` and the fields of ``items`` are the ones its
    technique declares (:mod:`convlens.outputs`); the rest is the answer's head.
    """

    technique: str
    family: Family
    model: str
    weights: str
    layer: str | None = None
    images: dict[str, Tensor] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    target: int | None = None
    target_label: str | None = None
    topk: list[tuple[int, str, float]] = field(default_factory=list)
    objective: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    vectors: list[list[float]] | None = None
    points: list[list[float]] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.technique

    def sections(self) -> dict[str, list[str]]:
        """The keys of each declared section (what :meth:`convlens.outputs.Outputs.check` compares)."""
        return {"images": list(self.images), "scalars": list(self.scalars), "labels": list(self.labels),
                "series": list(self.series), "items": sorted({k for item in self.items for k in item}),
                "columns": list(self.columns)}

    def to_json(self, encode_image: Callable[[Tensor], str]) -> dict[str, Any]:
        """Every field as JSON values, images through ``encode_image`` (a response type picks its fields), declared
        integer scalars as ints."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "images": {k: encode_image(v) for k, v in self.images.items()},
                "topk": [{"index": i, "label": label, "probability": p} for i, label, p in self.topk],
                "series": {k: [list(xs), list(ys)] for k, (xs, ys) in self.series.items()},
                "items": list(self.items), "scalars": self._typed_scalars(), "labels": dict(self.labels),
                "columns": self._encoded_columns()}

    def _encoded_columns(self) -> dict[str, str]:
        """Each column as base64 of its little-endian array, in the element type its declaration names."""
        if not self.columns:
            return {}
        declared = registry.get(self.technique).declared
        out = {}
        for key, values in self.columns.items():
            found = declared.find("columns", key)
            kind = found[0].kind if found is not None else "float32"
            array = np.ascontiguousarray(np.asarray(values), dtype=COLUMN_DTYPES[kind])
            out[key] = base64.b64encode(array.tobytes()).decode("ascii")
        return out

    def _typed_scalars(self) -> dict[str, Any]:
        """The scalars, a declared integer as a JSON integer (``"predicted_class": 9``, not ``9.0``)."""
        try:
            declared = registry.get(self.technique).declared
        except KeyError:  # an answer made outside the registry (tests of the renderers)
            return dict(self.scalars)
        return declared.typed_scalars(self.scalars)


def _value(v: float | Tensor, i: int) -> float:
    return float(v[i]) if isinstance(v, Tensor) and v.ndim > 0 else float(v)


def attribution(head: Output, result: Attribution, i: int, display: Tensor, alpha: float, colormap: str) -> Output:
    """Image ``i`` of a batch: ``input``, ``map``, ``overlay`` and one picture per signed map."""
    heat = result.map[i].detach().cpu()
    named = {"input": display, "map": heat, "overlay": images.overlay(display, heat, alpha, colormap)}
    extra: dict[str, float] = {}
    for name, signed in result.signed.items():
        s = signed[i:i + 1].detach().float().cpu()
        named[name] = images.gradient_image(s)[0] if s.ndim == 4 else images.diverging(s[0])
        if s.ndim == 3:  # a signed heat map: its colours' ends are ± its largest |value|
            extra[f"{name}_abs_max"] = float(s.abs().max())
    scalars = {"score": float(result.score[i]), **heat_scale(result, i), **extra,
               **{k: _value(v, i) for k, v in result.scalars.items()}}
    return dataclasses.replace(head, images=named, scalars=scalars, labels={**head.labels, "colormap": colormap})


def heat_scale(result: Attribution, i: int) -> dict[str, float]:
    """What the colours of image ``i``'s map stand for (registry.HEAT_SCALE). A technique's ``map`` is its ``raw``
    map, brought to the input's size (bilinearly, when ``raw`` is at a layer's grid), with negatives at 0, divided
    by its maximum: colour 0 stands for 0 and colour 1 for that maximum. Without ``raw`` the map is shown as is."""
    heat = result.map[i].detach().float()
    if result.raw is None:
        return {"map_low": 0.0, "map_high": 1.0, "map_min": float(heat.min()), "map_max": float(heat.max()),
                "map_normalised": 0.0}
    raw = result.raw[i].detach().float()
    sized = raw if raw.shape[-2:] == heat.shape[-2:] else F.interpolate(
        raw[None, None], size=heat.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return {"map_low": 0.0, "map_high": float(sized.clamp_min(0).max()), "map_min": float(raw.min()),
            "map_max": float(raw.max()), "map_normalised": 1.0}


def tile_scale(tile: Tensor) -> int:
    return max(1, math.ceil(MIN_TILE_PX / min(tile.shape[-2:])))


def grid_image(grid: Grid, colormap: str | None = None) -> tuple[Tensor, int]:
    """A grid's tiles as one RGB mosaic (grey tiles colour-mapped) and the enlargement used."""
    tiles = grid.tiles.detach().float().cpu()
    scale = tile_scale(tiles)
    if scale > 1:
        tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest")
    if tiles.shape[1] == 1:
        tiles = images.colormap(tiles[:, 0], colormap or grid.colormap)
    return images.grid(list(tiles), grid.columns, pad=GRID_PAD), scale


def grids(head: Output, result: Grids, display: Tensor | None, alpha: float, colormap: str | None) -> Output:
    """Each grid as a mosaic (its name), the input, and the focus map alone and over the input.

    ``items`` get the tile's place in the mosaic (``grid``, ``row``, ``col``); ``scalars`` say how
    to cut a tile out of it (``<grid>_tile_height``/``_tile_width``, ``grid_pad``).
    """
    named: dict[str, Tensor] = {}
    items: list[dict[str, Any]] = []
    scalars = dict(result.scalars)
    scalars["grid_pad"] = float(GRID_PAD)
    for name, grid in result.grids.items():
        named[name], scale = grid_image(grid, colormap)
        scalars[f"{name}_tile_height"] = float(grid.tiles.shape[-2] * scale)
        scalars[f"{name}_tile_width"] = float(grid.tiles.shape[-1] * scale)
        scalars[f"{name}_columns"] = float(grid.columns)
        for k, item in enumerate(grid.items):
            row, col = divmod(k, grid.columns)
            items.append({**item, "grid": name, "row": row, "col": col})
    if display is not None:
        named["input"] = display
        if result.focus is not None:
            size = display.shape[-2:]
            focus = F.interpolate(result.focus[None, None].float(), size=size, mode="bilinear",
                                  align_corners=False)[0, 0].clamp(0, 1)
            named["focus"] = focus
            named["overlay"] = images.overlay(display, focus, alpha, colormap or "viridis")
    grey = [g.colormap for g in result.grids.values() if g.tiles.shape[1] == 1]
    used = colormap or (grey[0] if grey else "viridis" if result.focus is not None and display is not None else None)
    labels = {**head.labels, "colormap": used} if used else head.labels  # what the one-channel tiles are coloured with
    return dataclasses.replace(head, images=named, scalars=scalars, items=items, labels=labels)


def synthesis(head: Output, result: Synthesis) -> Output:
    history = {k: (list(map(float, range(len(v)))), [float(x) for x in v]) for k, v in result.history.items()}
    return dataclasses.replace(head, images=_pictures(result.images), scalars=dict(result.scalars),
                               series={**history, **result.series},
                               labels=dict(result.labels))


def corpus(head: Output, result: Corpus) -> Output:
    def rows(t: Tensor | None) -> list[list[float]] | None:
        return None if t is None else t.detach().float().cpu().tolist()

    return dataclasses.replace(head, images=_pictures(result.images), scalars=dict(result.scalars),
                               items=list(result.items), series=dict(result.series), vectors=rows(result.vectors),
                               points=rows(result.points), columns=dict(result.columns))


def _pictures(named: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clamp(0, 1) for k, v in named.items()}


