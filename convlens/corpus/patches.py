"""Maximally activating patches (Zeiler & Fergus 2014; Girshick et al. 2014; CS231n lecture 12).

One pass over the dataset records, for every channel of a spatial layer, the k images whose strongest
unit of that channel fires most (value, image, unit row, unit column). Each patch is the unit's receptive
field as the layer catalogue computes it (:meth:`convlens.receptive_field.LayerInfo.box`), cut from the
image the model saw; the parts of a field that fall outside the image are shown grey, so every patch of a
layer has the same size and the same scale.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from convlens import hooks
from convlens.corpus.codes import Progress, batches, cache_dir, cache_key, default_batch_size, inference_copy
from convlens.corpus.datasets import Dataset
from convlens.models import LoadedModel
from convlens.receptive_field import LayerInfo

STORED_K = 16  # the cache keeps this many per channel; a request for more recomputes
PAD_VALUE = 0.5


@dataclass(frozen=True)
class TopUnits:
    """Per channel c and rank r: ``values[c, r]`` at unit (``ys``, ``xs``)[c, r] of image ``images[c, r]``
    (-1 where the dataset has fewer images than k). Arrays are (C, k)."""

    values: np.ndarray
    images: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    cached: bool = False


def top_units_in_batch(activation: Tensor, start: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, C, h, w) → for each image and channel its strongest unit: values (B, C), image indices (B, C),
    rows (B, C), columns (B, C)."""
    b, c, _h, w = activation.shape
    flat = activation.flatten(2)
    values, where = flat.max(dim=2)
    images = torch.arange(start, start + b).view(b, 1).expand(b, c)
    return values, images, torch.div(where, w, rounding_mode="floor"), where % w


def merge_top(best: tuple[Tensor, ...] | None, new: tuple[Tensor, ...], k: int) -> tuple[Tensor, ...]:
    """Running per-channel top-k: (values, images, ys, xs) each (C, m) merged with a batch's (B, C)."""
    new_t = tuple(t.T for t in new)  # (C, B)
    merged = new_t if best is None else tuple(torch.cat([a, b], dim=1) for a, b in zip(best, new_t, strict=True))
    order = torch.sort(merged[0], dim=1, descending=True, stable=True).indices[:, :k]
    return tuple(t.gather(1, order) for t in merged)


def top_units(loaded: LoadedModel, dataset: Dataset, layer: str, k: int = STORED_K, batch_size: int | None = None,
              progress: Progress | None = None) -> TopUnits:
    """The top-``k`` (at least :data:`STORED_K`) units of every channel of ``layer`` over ``dataset``, cached."""
    k = max(k, STORED_K)
    key = cache_key(loaded, dataset, layer, "top_units", k)
    path = cache_dir("patches") / f"{key}.npz"
    if path.is_file():
        data = np.load(path)
        return TopUnits(data["values"], data["images"], data["ys"], data["xs"], cached=True)
    net = inference_copy(loaded.net)
    best: tuple[Tensor, ...] | None = None
    for start, x in batches(loaded, dataset, batch_size or default_batch_size(loaded)):
        with torch.inference_mode(), hooks.capture(net, [layer], detach=True) as captured:
            net(x)
            activation = captured[layer].float().cpu()
        if activation.ndim != 4:
            raise ValueError(f"layer {layer!r} is not spatial: its output is {tuple(activation.shape[1:])}")
        best = merge_top(best, top_units_in_batch(activation, start), k)
        if progress is not None:
            progress(start + len(x), len(dataset))
    assert best is not None
    values, images, ys, xs = (t.numpy() for t in best)
    if values.shape[1] < k:  # fewer images than k: pad
        pad = k - values.shape[1]
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
        images, ys, xs = (np.pad(a, ((0, 0), (0, pad)), constant_values=-1) for a in (images, ys, xs))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, values=values, images=images, ys=ys, xs=xs)
    os.replace(tmp, path)
    (path.with_suffix(".json")).write_text(json.dumps({"model": loaded.name, "layer": layer, "dataset": dataset.name}))
    return TopUnits(values, images, ys, xs)


def field_box(row: LayerInfo, y: int, x: int) -> tuple[int, int, int, int]:
    """Unit (y, x)'s receptive field in input pixels, unclipped: (top, left, bottom, right), bottom/right
    exclusive; it is ``row.receptive_field`` pixels on a side."""
    rf = row.receptive_field
    top = int(np.floor(row.start + y * row.stride - rf / 2))
    left = int(np.floor(row.start + x * row.stride - rf / 2))
    return top, left, top + rf, left + rf


def crop_field(image: Tensor, row: LayerInfo, y: int, x: int) -> Tensor:
    """The receptive field of unit (y, x) cut from ``image`` (3, S, S): (3, rf, rf), grey outside the image."""
    top, left, bottom, right = field_box(row, y, x)
    _, h, w = image.shape
    out = torch.full((image.shape[0], bottom - top, right - left), PAD_VALUE, dtype=image.dtype)
    t0, l0, b0, r0 = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if b0 > t0 and r0 > l0:
        out[:, t0 - top:b0 - top, l0 - left:r0 - left] = image[:, t0:b0, l0:r0]
    return out


def tile(patch: Tensor, size: int) -> Tensor:
    """A patch resized to ``size``×``size`` for a grid (nearest when enlarging, so pixels stay visible)."""
    if patch.shape[-1] == size:
        return patch
    mode = "nearest" if size > patch.shape[-1] else "area"
    return F.interpolate(patch[None], size=(size, size), mode=mode)[0]
