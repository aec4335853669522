"""Dataset management through the API: list, create (built-in generator, natural sample images, a zip),
remove, and fetch a few images of a dataset (the dashboard's selection view) or a sprite sheet of many as
small tiles (its hover thumbnails)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.models import LoadedModel
from convlens.outputs import Image, Item, Scalar
from convlens.registry import technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError, as_int
from convlens.techniques.corpus import work

MAX_IMAGES_PER_CALL = 64
MAX_THUMB = 256
SHEET_COLUMNS = 64
MAX_SHEET = 4096  # tiles per sheet: 64 × 64
MAX_SHEET_TILE = 64

# One row per dataset (list and every change) — convlens.corpus.datasets.Dataset.describe
_DATASET_ROW = (Item("name", "the dataset's name"), Item("images", "images in it"), Item("classes", "labels in it"),
                Item("fingerprint", "a digest of its files"), Item("labels", "its labels (the first 50)"),
                Item("source", "where it came from"), Item("skipped", "files skipped as not images"),
                Item("largest_class", "images of its largest label"))


@dataclass(frozen=True)
class DatasetsParams:
    """``action``: list | builtin (``n`` generated images) | natural | import (``archive``: a base64 zip) |
    remove | images (``indices``: comma-separated, of dataset ``name``, as ``size`` px thumbnails) | sheet
    (images ``start`` … ``start + count - 1`` as ``size`` px square tiles, 64 to a row)."""

    action: Literal["list", "builtin", "natural", "import", "remove", "images", "sheet"] = "list"
    name: str = ""
    n: int = 1000
    archive: str = ""
    indices: str = ""
    size: int = 96
    start: int = 0
    count: int = MAX_SHEET

    def runs_long(self) -> bool:
        return (self.action == "builtin" and self.n > work.SYNC_MAX_BUILTIN_IMAGES) or \
            (self.action == "import" and len(self.archive) > work.SYNC_MAX_ARCHIVE_CHARS)


def sheet(ds: store.Dataset, start: int, count: int, tile: int) -> Tensor:
    """Images ``start`` … of ``ds`` as ``tile``-px squares (centre crop), row-major, :data:`SHEET_COLUMNS` to a
    row: (3, rows·tile, min(count, 64)·tile) in [0, 1]; image ``start + k`` is at row k // 64, column k % 64."""
    if not 0 <= start < len(ds):
        raise SchemaError("params.start", f"must be in [0, {len(ds) - 1}], got {start}")
    if not 1 <= count <= MAX_SHEET:
        raise SchemaError("params.count", f"must be in [1, {MAX_SHEET}], got {count}")
    if not 8 <= tile <= MAX_SHEET_TILE:
        raise SchemaError("params.size", f"must be in [8, {MAX_SHEET_TILE}] for a sheet, got {tile}")
    count = min(count, len(ds) - start)
    cols = min(count, SHEET_COLUMNS)
    rows = -(-count // cols)
    mosaic = np.full((rows * tile, cols * tile, 3), 255, dtype=np.uint8)
    for k in range(count):
        r, c = divmod(k, cols)
        mosaic[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = np.asarray(
            imaging.resize_and_crop(ds.image(start + k), tile, tile))
    return torch.from_numpy(mosaic).permute(2, 0, 1).float() / 255.0


def _indices(text: str, n: int) -> list[int]:
    try:
        out = [as_int("params.indices", t.strip()) for t in text.split(",") if t.strip()]
    except SchemaError:
        raise SchemaError("params.indices", f"must be comma-separated integers (ASCII digits), got {text[:40]!r}"
                          ) from None
    if not 1 <= len(out) <= MAX_IMAGES_PER_CALL:
        raise SchemaError("params.indices", f"must name 1 to {MAX_IMAGES_PER_CALL} images, got {len(out)}")
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise SchemaError("params.indices", f"must be in [0, {n - 1}], got {bad[0]}")
    return out


@technique(name="datasets", title="Datasets", family="corpus", params=DatasetsParams, inputs=(), endpoint="dataset",
           page="datasets",
           endpoint_default=True, order=5, reference="torchvision ImageFolder layout", outputs=(
               # what each action answers: list and the changes a row per dataset; images thumbnails; sheet tiles
               Scalar("datasets", "datasets on the server", optional=True, integer=True),
               *(Item(d.name, d.caption, optional=True) for d in _DATASET_ROW),
               Image("i{index}", "image {index}", optional=True),
               Item("index", "the image's index in the dataset", optional=True),
               Item("label", "the image's label", optional=True),
               Item("file", "the image's file in the dataset", optional=True),
               Image("sheet", "images {start:.0f} onwards as square tiles, {columns:.0f} to a row", kind="grid",
                     optional=True),
               Scalar("start", "index of the sheet's first image", optional=True, integer=True),
               Scalar("count", "images on the sheet", optional=True, integer=True),
               Scalar("columns", "tiles per row of the sheet", optional=True, integer=True)))
def datasets(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: DatasetsParams = DatasetsParams(),
             progress: Progress | None = None) -> Corpus:
    """items: one row per dataset (list and every change); for ``images``: images ``i<index>`` (3, s, s) and
    one item per image (index, label, file)."""
    report = (lambda done, total: progress(done, total, None)) if progress is not None else None
    if params.action == "sheet":
        ds = store.open_dataset(params.name)
        return Corpus(images={"sheet": sheet(ds, params.start, params.count, params.size)},
                      scalars={"start": float(params.start), "count": float(min(params.count, len(ds) - params.start)),
                               "columns": float(min(params.count, len(ds) - params.start, SHEET_COLUMNS))})
    if params.action == "images":
        ds = store.open_dataset(params.name)
        if not 16 <= params.size <= MAX_THUMB:
            raise SchemaError("params.size", f"must be in [16, {MAX_THUMB}], got {params.size}")
        chosen = _indices(params.indices, len(ds))
        pictures = {}
        for i in chosen:
            img = ds.image(i)
            img.thumbnail((params.size, params.size))
            pictures[f"i{i}"] = imaging.to_tensor(img)
        return Corpus(images=pictures, items=[{"index": i, "label": ds.label(i), "file": ds.files[i]} for i in chosen])
    if params.action == "builtin":
        store.builtin(store.check_name(params.name, "params.name"), params.n, progress=report)
    elif params.action == "natural":
        store.natural(store.check_name(params.name, "params.name"))
    elif params.action == "import":
        store.check_name(params.name, "params.name")
        try:
            data = base64.b64decode(params.archive, validate=True)
        except (binascii.Error, ValueError):
            raise SchemaError("params.archive", "must be a base64-encoded zip file") from None
        if not data:
            raise SchemaError("params.archive", "is empty")
        store.import_zip(params.name, data, progress=report)
    elif params.action == "remove":
        store.remove_dataset(store.check_name(params.name, "params.name"))
    rows = [d.describe() for d in store.list_datasets()]
    return Corpus(items=rows, scalars={"datasets": float(len(rows))})
