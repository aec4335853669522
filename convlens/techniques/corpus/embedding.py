"""The embedding scatter (CS231n lecture 12, "t-SNE of CNN codes"; Karpathy's CNN-codes t-SNE): every
image of a dataset placed in 2-D by PCA, t-SNE (van der Maaten & Hinton 2008) or UMAP (McInnes et al.
2018) of its CNN code, and optionally the map snapped to a regular grid of thumbnails.

Per image it answers compact columns (``x``, ``y``, ``label``, ``predicted``, ``correct``, ``confidence`` and, for
a chosen ``channel``, ``activation``): base64 typed arrays, so a million images are ~23 MB of text rather than
~100 MB of per-image dicts. ``compact`` leaves out the per-image ``points`` and ``items`` rows (what the
dashboard asks for) and answers the class names once instead; ``files`` answers the files of chosen images (the
export of a selection)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.corpus.codes import dataset_codes
from convlens.corpus.projection import cached_projection, snap_to_grid
from convlens.models import LoadedModel
from convlens.outputs import Column, Image, Item, Scalar
from convlens.registry import seed_field, technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import OverADataset

MAX_GRID_SIDE = 64
MAX_TILE = 64
MAX_CLASS_CODE = 65_535  # the label and predicted columns are uint16
MAX_FILES = 100_000  # files asked for in one request (an answer of ~5 MB; a larger selection takes several)


@dataclass(frozen=True)
class EmbeddingParams(OverADataset):
    """``grid``: side of the thumbnail grid (0: no grid image); ``tile``: its thumbnails' size in px;
    ``channel``: a channel of the code layer whose activation (the pooled code's value) is answered as the
    ``activation`` column; ``compact``: columns and class names only (no per-image ``points``/``items`` rows);
    ``files``: comma-separated image indices (at most 100,000) whose files are answered as items (``index``,
    ``file``), instead of the columns."""

    dataset: str = ""
    projection: Literal["umap", "tsne", "pca"] = "umap"  # ("method" picks the technique of an endpoint)
    seed: int = seed_field()
    layer: str | None = None
    pool: Literal["avg", "max"] = "avg"
    n_neighbors: int = 15
    perplexity: float = 30.0
    grid: int = 0
    tile: int = 32
    channel: int | None = None
    compact: bool = False
    files: str = ""


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
               Scalar("fitted", "images the map was fitted on (the rest placed on it)", integer=True),
               # every answer holds these columns but one asking for files (a lookup: its items are the answer)
               Column("x", "the image's first map coordinate", optional=True),
               Column("y", "the image's second map coordinate", optional=True),
               Column("label", "the image's label (its code in the label names)", kind="uint16", optional=True),
               Column("predicted", "the class the model says (its code in the predicted names)", kind="uint16",
                      optional=True),
               Column("correct", "1 when the predicted class's name is the label", kind="uint8", optional=True),
               Column("confidence", "the softmax probability of the predicted class", optional=True),
               Column("activation", "the chosen channel's activation (its pooled code value)", optional=True),
               Item("label", "the image's label", optional=True),
               Item("predicted", "the class the model says", optional=True),
               Item("file", "the image's file in the dataset", optional=True),
               Item("column", "which column a class name decodes (label or predicted)", optional=True),
               Item("code", "the class's code in that column", optional=True),
               Item("name", "the class's name", optional=True),
               Item("index", "an image asked for in files", optional=True)))
def embedding(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: EmbeddingParams = EmbeddingParams(),
              progress: Progress | None = None) -> Corpus:
    """columns (unless ``files``): per image its coordinates, label, predicted class, correctness, confidence (and
    activation); points (N, 2) and items per image (label, predicted class, file) unless ``compact``, else items
    naming the classes (column, code, name); items (index, file) for ``files``; images: ``grid`` when asked;
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
    chosen_files = _indices(params.files, len(ds))
    report = (lambda done, total: progress(done, total + 1, None)) if progress is not None else None
    codes = dataset_codes(loaded, ds, params.layer, params.pool, progress=report)
    if params.channel is not None and not 0 <= params.channel < codes.dim:
        raise SchemaError("params.channel", f"must be in [0, {codes.dim - 1}] (the code has {codes.dim} "
                                            f"channels), got {params.channel}")
    proj = cached_projection(codes.key, codes.vectors, params.projection, params.seed, params.n_neighbors,
                             params.perplexity)
    pictures = {}
    if params.grid:
        chosen, cells = snap_to_grid(proj.points, params.grid, params.seed)
        pictures["grid"] = grid_image(ds, chosen.tolist(), cells.tolist(), params.grid, params.tile)
    if progress is not None:
        progress(len(ds) + 1, len(ds) + 1, None)
    columns = {} if chosen_files else per_image_columns(loaded, ds, codes.predicted, codes.confidence, proj.points)
    if params.channel is not None and not chosen_files:
        columns["activation"] = np.asarray(codes.vectors[:, params.channel], dtype=np.float32)
    items: list[dict[str, float | int | str]] = []
    if params.compact:
        items += class_names(loaded, ds, np.asarray(codes.predicted))
    else:
        items += [{"label": ds.classes[int(t)], "predicted": loaded.label(int(p)), "file": f}
                  for t, p, f in zip(ds.targets, codes.predicted, ds.files, strict=True)]
    items += [{"index": i, "file": ds.files[i]} for i in chosen_files]
    return Corpus(points=None if params.compact else torch.from_numpy(proj.points), images=pictures, items=items,
                  columns=columns,
                  scalars={"images": float(len(ds)), "dim": float(codes.dim), "codes_seconds": codes.seconds,
                           "projection_seconds": proj.seconds, "codes_cached": float(codes.cached),
                           "projection_cached": float(proj.cached), "fitted": float(proj.fitted)})


def per_image_columns(loaded: LoadedModel, ds: store.Dataset, predicted: np.ndarray, confidence: np.ndarray,
                      points: np.ndarray) -> dict[str, np.ndarray]:
    """The typed columns of every image: map coordinates, label and predicted codes, correct, confidence."""
    if max(len(ds.classes), len(loaded.classes)) > MAX_CLASS_CODE + 1:
        raise SchemaError("params.dataset", f"more than {MAX_CLASS_CODE + 1} classes cannot be coloured")
    labels = np.asarray(ds.targets, dtype=np.uint16)
    guessed = np.asarray(predicted, dtype=np.uint16)
    label_code = {name: k for k, name in enumerate(ds.classes)}
    # the predicted class k is correct for an image whose label has k's name: a lookup per class, not per image
    same = np.array([label_code.get(name, -1) for name in loaded.classes], dtype=np.int64)
    correct = (same[guessed] == labels).astype(np.uint8)
    return {"x": np.ascontiguousarray(points[:, 0], dtype=np.float32),
            "y": np.ascontiguousarray(points[:, 1], dtype=np.float32),
            "label": labels, "predicted": guessed, "correct": correct,
            "confidence": np.asarray(confidence, dtype=np.float32)}


def class_names(loaded: LoadedModel, ds: store.Dataset, predicted: np.ndarray) -> list[dict[str, float | int | str]]:
    """The names the label and predicted columns' codes stand for (every label; the predicted classes present)."""
    rows: list[dict[str, float | int | str]] = [{"column": "label", "code": k, "name": name}
                                                for k, name in enumerate(ds.classes)]
    present = np.flatnonzero(np.bincount(predicted)).tolist() if len(predicted) else []
    return rows + [{"column": "predicted", "code": int(k), "name": loaded.label(int(k))} for k in present]


def _indices(text: str, n: int) -> list[int]:
    """``files``: comma-separated image indices, each in [0, n)."""
    if not text.strip():
        return []
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SchemaError("params.files", f"must be comma-separated image indices, got {text[:40]!r}") from None
    if len(out) > MAX_FILES:
        raise SchemaError("params.files", f"must name at most {MAX_FILES:,} images, got {len(out):,}")
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise SchemaError("params.files", f"must be in [0, {n - 1}], got {bad[0]}")
    return out
