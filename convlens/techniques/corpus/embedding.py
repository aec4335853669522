"""The embedding scatter (CS231n lecture 12, "t-SNE of CNN codes"; Karpathy's CNN-codes t-SNE): every
image of a dataset placed in 2-D by PCA, t-SNE (van der Maaten & Hinton 2008) or UMAP (McInnes et al.
2018) of its CNN code, and optionally the map snapped to a regular grid of thumbnails."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.corpus.codes import dataset_codes
from convlens.corpus.projection import cached_projection, snap_to_grid
from convlens.models import LoadedModel
from convlens.outputs import Image, Item, Scalar
from convlens.registry import seed_field, technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import OverADataset

MAX_GRID_SIDE = 64
MAX_TILE = 64


@dataclass(frozen=True)
class EmbeddingParams(OverADataset):
    """``grid``: side of the thumbnail grid (0: no grid image); ``tile``: its thumbnails' size in px."""

    dataset: str = ""
    projection: Literal["umap", "tsne", "pca"] = "umap"  # ("method" picks the technique of an endpoint)
    seed: int = seed_field()
    layer: str | None = None
    pool: Literal["avg", "max"] = "avg"
    n_neighbors: int = 15
    perplexity: float = 30.0
    grid: int = 0
    tile: int = 32


def grid_image(ds: store.Dataset, chosen: list[int], cells: list[int], side: int, tile: int) -> Tensor:
    """Thumbnails of ``chosen`` images placed in their ``cells`` of a side×side mosaic (3, side·tile, side·tile)."""
    mosaic = torch.ones(3, side * tile, side * tile)
    for i, cell in zip(chosen, cells, strict=True):
        r, c = divmod(int(cell), side)
        img = ds.image(int(i)).resize((tile, tile))
        mosaic[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = imaging.to_tensor(img)
    return mosaic


@technique(name="embedding", page="embedding", title="Embedding", family="corpus", params=EmbeddingParams, inputs=(),
           endpoint="dataset", layer="optional", default_layer="code", order=20,
           reference="van der Maaten & Hinton 2008; McInnes et al. 2018; CS231n lecture 12", outputs=(
               Image("grid", "the map snapped to a grid of thumbnails", kind="grid", optional=True),
               Scalar("images", "images mapped", integer=True),
               Scalar("dim", "dimensions of each CNN code", integer=True),
               Scalar("codes_seconds", "time spent on the CNN codes", "s"),
               Scalar("projection_seconds", "time spent on the 2-D map", "s"),
               Scalar("codes_cached", "1 when the codes came from the cache", integer=True),
               Scalar("projection_cached", "1 when the map came from the cache", integer=True),
               Item("label", "the image's label"), Item("predicted", "the class the model says"),
               Item("file", "the image's file in the dataset")))
def embedding(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: EmbeddingParams = EmbeddingParams(),
              progress: Progress | None = None) -> Corpus:
    """points (N, 2); items: per image its label, predicted class and file; images: ``grid`` when asked;
    scalars: timings and whether the codes and the map came from the cache."""
    ds = store.open_dataset(params.dataset)
    if not 2 <= params.n_neighbors <= 200:
        raise SchemaError("params.n_neighbors", f"must be in [2, 200], got {params.n_neighbors}")
    if not 2.0 <= params.perplexity <= 100.0:
        raise SchemaError("params.perplexity", f"must be in [2, 100], got {params.perplexity}")
    if not 0 <= params.grid <= MAX_GRID_SIDE:
        raise SchemaError("params.grid", f"must be in [0, {MAX_GRID_SIDE}], got {params.grid}")
    if not 8 <= params.tile <= MAX_TILE:
        raise SchemaError("params.tile", f"must be in [8, {MAX_TILE}], got {params.tile}")
    if len(ds) < 3:
        raise SchemaError("params.dataset", f"{ds.name!r} has {len(ds)} images; a map needs at least 3")
    report = (lambda done, total: progress(done, total + 1, None)) if progress is not None else None
    codes = dataset_codes(loaded, ds, params.layer, params.pool, progress=report)
    proj = cached_projection(codes.key, codes.vectors, params.projection, params.seed, params.n_neighbors,
                             params.perplexity)
    pictures = {}
    if params.grid:
        chosen, cells = snap_to_grid(proj.points, params.grid, params.seed)
        pictures["grid"] = grid_image(ds, chosen.tolist(), cells.tolist(), params.grid, params.tile)
    if progress is not None:
        progress(len(ds) + 1, len(ds) + 1, None)
    items: list[dict[str, float | int | str]] = [
        {"label": ds.classes[int(t)], "predicted": loaded.label(int(p)), "file": f}
        for t, p, f in zip(ds.targets, codes.predicted, ds.files, strict=True)]
    return Corpus(points=torch.from_numpy(proj.points), images=pictures, items=items,
                  scalars={"images": float(len(ds)), "dim": float(codes.dim), "codes_seconds": codes.seconds,
                           "projection_seconds": proj.seconds, "codes_cached": float(codes.cached),
                           "projection_cached": float(proj.cached)})
