"""Nearest neighbours in code space vs pixel space (CS231n lecture 12; Krizhevsky et al. 2012, Fig. 4):
images close in CNN-code space share content even where their pixels differ, while pixel-space
neighbours share colours and layout. Exact search up to 50,000 images, an approximate faiss index kept
beside the cached codes (or pixels) above that (:mod:`convlens.corpus.index`); ``code_exact`` and
``pixel_exact`` say which answered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.corpus.codes import PIXEL_SIZE, codes_of, dataset_codes, dataset_pixels, pixel_row, reduced_precision
from convlens.corpus.index import nearest
from convlens.models import LoadedModel
from convlens.outputs import Image, Item, Scalar
from convlens.registry import technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import OverADataset

MAX_K = 64
TILE = 64


@dataclass(frozen=True)
class NeighboursParams(OverADataset):
    """``query``: a dataset index (used when no image is uploaded); ``k`` neighbours in each ``space``."""

    dataset: str = ""
    query: int | None = None
    k: int = 8
    space: Literal["both", "code", "pixel"] = "both"
    metric: Literal["l2", "cosine"] = "l2"
    layer: str | None = None
    pool: Literal["avg", "max"] = "avg"


def pixel_vector(img_chw: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → the pixel-space vector of :func:`convlens.corpus.codes.dataset_pixels` (1, 3·32²)."""
    return pixel_row(imaging.to_pil(img_chw), PIXEL_SIZE).astype(np.float32)[None]


def _row(ds: store.Dataset, indices: list[int]) -> Tensor:
    tiles = [imaging.to_tensor(ds.image(i).resize((TILE, TILE))) for i in indices]
    return imaging.grid(tiles, columns=max(1, len(tiles)), pad=2)


@technique(name="neighbours", title="Nearest neighbours", family="corpus", params=NeighboursParams, inputs=(),
           page="neighbours",
           optional_inputs=("image",), endpoint="dataset", layer="optional", default_layer="code", order=30,
           reference="Krizhevsky et al. 2012 (Fig. 4); CS231n lecture 12", outputs=(
               Image("query", "query"),
               # one row per space asked for (params.space)
               Image("code", "nearest by CNN code, nearest first", kind="grid", optional=True),
               Image("pixel", "nearest by pixels, nearest first", kind="grid", optional=True),
               Scalar("images", "images searched", integer=True),
               # only for a query taken from the dataset (an uploaded one has no label)
               Scalar("code_same_label", "share of the CNN-code neighbours with the query's label", optional=True),
               Scalar("pixel_same_label", "share of the pixel neighbours with the query's label", optional=True),
               # one per space asked for: 1 exact search, 0 an approximate (faiss) index over a large dataset
               Scalar("code_exact", "1 when the CNN-code neighbours are exact, 0 when from an approximate index",
                      optional=True, integer=True),
               Scalar("pixel_exact", "1 when the pixel neighbours are exact, 0 when from an approximate index",
                      optional=True, integer=True),
               Item("space", "code or pixel"), Item("rank", "0 for the nearest"),
               Item("index", "the neighbour's index in the dataset"), Item("distance", "its distance to the query"),
               Item("label", "its label"), Item("file", "its file in the dataset")))
def neighbours(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: NeighboursParams = NeighboursParams(),
               progress: Progress | None = None) -> Corpus:
    """images: ``query``, ``code`` and/or ``pixel`` (a row of the k neighbours, nearest first); items: one per
    neighbour (space, rank, index, distance, label, file)."""
    ds = store.open_dataset(params.dataset)
    if not 1 <= params.k <= MAX_K:
        raise SchemaError("params.k", f"must be in [1, {MAX_K}], got {params.k}")
    layer = params.layer or loaded.code_layer
    if "image" in inputs:
        x = inputs["image"]
        exclude = None
        shown = loaded.preprocessing.denormalize(x[0]).clamp(0, 1).cpu()
    else:
        if params.query is None:
            raise SchemaError("params.query", "give a dataset index or upload an image")
        if not 0 <= params.query < len(ds):
            raise SchemaError("params.query", f"must be in [0, {len(ds) - 1}], got {params.query}")
        shown = loaded.preprocessing.display(ds.image(params.query))
        x = loaded.preprocessing.normalize(shown)[None].to(loaded.device)
        exclude = np.array([params.query])
    report = (lambda done, total: progress(done, total, None)) if progress is not None else None
    pictures = {"query": shown}
    items: list[dict[str, float | int | str]] = []
    scalars: dict[str, float] = {"images": float(len(ds))}
    spaces = ("code", "pixel") if params.space == "both" else (params.space,)
    for space in spaces:
        if space == "code":
            codes = dataset_codes(loaded, ds, layer, params.pool, progress=report)
            query = codes_of(loaded, x, layer, params.pool, dtype=reduced_precision(loaded))[0].cpu().numpy()
            database = codes.vectors
        else:
            database = dataset_pixels(ds, progress=report)
            query = pixel_vector(shown)
        found = nearest(query, database, params.k, params.metric, exclude=exclude)
        idx, dist = found.indices, found.distances
        scalars[f"{space}_exact"] = float(found.exact)
        chosen = [int(i) for i in idx[0]]
        pictures[space] = _row(ds, chosen)
        items.extend({"space": space, "rank": r, "index": i, "distance": float(d), "label": ds.label(i),
                      "file": ds.files[i]} for r, (i, d) in enumerate(zip(chosen, dist[0], strict=True)))
        labels = [ds.label(i) for i in chosen]
        if exclude is not None:
            query_label = ds.label(int(exclude[0]))
            scalars[f"{space}_same_label"] = float(np.mean([lab == query_label for lab in labels]))
    return Corpus(images=pictures, items=items, scalars=scalars)
