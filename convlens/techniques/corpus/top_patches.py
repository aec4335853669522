"""Maximally activating patches (Zeiler & Fergus 2014; Girshick et al. 2014; CS231n lecture 12): for a
spatial layer, the k dataset locations where a channel fires most, each cut to that unit's receptive field
as the layer catalogue computes it. One pass gives every channel's top-k (cached), so browsing channels is
instant."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.corpus.patches import crop_field, field_box, tile, top_units
from convlens.models import LoadedModel
from convlens.outputs import Image, Item, Scalar
from convlens.registry import technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import OverADataset

MAX_K = 64
MAX_OVERVIEW = 512


@dataclass(frozen=True)
class TopPatchesParams(OverADataset):
    """``channel``: the channel to show (None: an overview with every channel's strongest patch);
    ``tile``: the patches' size in the grid, px (0: the receptive field's own size)."""

    dataset: str = ""
    layer: str | None = None
    channel: int | None = None
    k: int = 9
    tile: int = 0


@technique(name="top_patches", title="Top patches", family="corpus", params=TopPatchesParams, inputs=(),
           page="top_patches",
           endpoint="dataset", layer="spatial", default_layer="patch", order=40,
           reference="Zeiler & Fergus 2014; Girshick et al. 2014; CS231n lecture 12", outputs=(
               # no grid for an empty dataset
               Image("grid", "strongest patches, each cut to the unit's receptive field", kind="grid", optional=True),
               Scalar("channels", "channels of the layer", integer=True),
               Scalar("receptive_field", "side of a unit's receptive field", "px", integer=True),
               Scalar("input_size", "side of the model's input", "px", integer=True),
               Scalar("stride", "input pixels between neighbouring units", "px", integer=True),
               Scalar("images", "images ranked", integer=True),
               Scalar("columns", "patches per row of the grid", integer=True),
               Scalar("tile", "side of a patch in the grid", "px", integer=True),
               Scalar("cached", "1 when the ranking came from the cache", integer=True),
               Item("rank", "0 for the strongest"), Item("channel", "the channel"),
               Item("index", "the image's index in the dataset"), Item("activation", "the unit's activation"),
               Item("y", "the unit's row in the layer"), Item("x", "the unit's column in the layer"),
               Item("top", "the field's top edge in the input"), Item("left", "the field's left edge in the input"),
               Item("bottom", "the field's bottom edge in the input"),
               Item("right", "the field's right edge in the input"),
               Item("label", "the image's label"), Item("file", "the image's file in the dataset")))
def top_patches(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: TopPatchesParams = TopPatchesParams(),
                progress: Progress | None = None) -> Corpus:
    """images: ``grid`` (the k patches of ``channel``, strongest first, or the overview); items: one per patch
    (rank, channel, index, activation, unit y/x, its box in input pixels, label, file); scalars: the layer's
    channels, receptive field and stride."""
    ds = store.open_dataset(params.dataset)
    layer = params.layer or loaded.default_layer("patch")
    row = loaded.layer(layer)
    channels = row.output_shape[0]
    if not 1 <= params.k <= MAX_K:
        raise SchemaError("params.k", f"must be in [1, {MAX_K}], got {params.k}")
    if params.channel is not None and not 0 <= params.channel < channels:
        raise SchemaError("params.channel", f"must be in [0, {channels - 1}] for {layer}, got {params.channel}")
    if not (params.tile == 0 or 8 <= params.tile <= 256):
        raise SchemaError("params.tile", f"must be 0 or in [8, 256], got {params.tile}")
    report = (lambda done, total: progress(done, total, None)) if progress is not None else None
    top = top_units(loaded, ds, layer, params.k, progress=report)
    size = params.tile or max(row.receptive_field, 16)
    if params.channel is None:
        chosen = [(c, 0) for c in range(min(channels, MAX_OVERVIEW))]
    else:
        chosen = [(params.channel, r) for r in range(params.k)]
    tiles: list[Tensor] = []
    items: list[dict[str, float | int | str]] = []
    display_cache: dict[int, Tensor] = {}
    for rank, (c, r) in enumerate(chosen):
        i = int(top.images[c, r])
        if i < 0:
            continue
        if i not in display_cache:
            display_cache[i] = loaded.preprocessing.display(ds.image(i))
        y, x = int(top.ys[c, r]), int(top.xs[c, r])
        tiles.append(tile(crop_field(display_cache[i], row, y, x), size))
        t, left, b, right = field_box(row, y, x)
        items.append({"rank": rank if params.channel is not None else r, "channel": c, "index": i,
                      "activation": float(top.values[c, r]), "y": y, "x": x, "top": t, "left": left, "bottom": b,
                      "right": right, "label": ds.label(i), "file": ds.files[i]})
    columns = max(1, math.ceil(math.sqrt(len(tiles))))
    pictures = {"grid": imaging.grid(tiles, columns=columns, pad=2)} if tiles else {}
    return Corpus(images=pictures, items=items,
                  scalars={"channels": float(channels), "receptive_field": float(row.receptive_field),
                           "input_size": float(loaded.preprocessing.input_size),
                           "stride": float(row.stride), "images": float(len(ds)), "columns": float(columns),
                           "tile": float(size), "cached": float(top.cached)})
