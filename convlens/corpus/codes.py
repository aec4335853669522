"""CNN codes of a dataset (CS231n: "the 4096-d vector right before the classifier"), cached on disk.

``dataset_codes(loaded, dataset, layer)`` runs the model over the dataset in batches (decoding the next
batch on a thread while the current one runs; channels-last, BatchNorm folded, in bfloat16 where the
CPU has native bfloat16 — codes stay float32 with cosine similarity ≥ 0.9999 to a float32 forward) and
writes the (N, D) float32 codes straight into a memory-mapped ``.npy`` file, so peak memory is bounded by
the batch size, not the dataset size. The file is keyed by everything that decides the codes —

    model name, weights checksum (the weights file's SHA-256; the state dict's for random weights),
    layer, pooling, preprocessing (input size, resize, mean, std), forward precision, dataset fingerprint
    (every file's relative path, size and modification time)

— so a second open is a file read, and a changed dataset, model, weights file or layer is never
served stale codes. A cache file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from convlens import hooks
from convlens.corpus.datasets import Dataset, data_dir
from convlens.images import resize_and_crop
from convlens.models import LoadedModel, find_weights
from convlens.zoo.weights import sha256_file

Pool = Literal["avg", "max"]
Progress = Callable[[int, int], None]


def cache_dir(kind: str) -> Path:
    path = data_dir() / ".cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_digest(loaded: LoadedModel) -> str:
    """The weights file's checksum; for random weights (no file) the checksum of the state dict itself."""
    cached = getattr(loaded, "_convlens_weights_digest", None)
    if cached is not None:
        return str(cached)
    path = find_weights(loaded.name) if loaded.weights != "random" else None
    if path is not None:
        digest = sha256_file(path)
    else:
        h = hashlib.sha256()
        for name, tensor in sorted(loaded.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()
    object.__setattr__(loaded, "_convlens_weights_digest", digest)
    return digest


def cache_key(loaded: LoadedModel, dataset: Dataset, layer: str, *extra: object) -> str:
    """Hex key of everything that decides a dataset's codes (plus ``extra``: pooling, projection settings)."""
    p = loaded.preprocessing
    parts = [loaded.name, loaded.weights, weights_digest(loaded), layer, p.input_size, p.resize_size, list(p.mean),
             list(p.std), dataset.fingerprint, *extra]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def default_batch_size(loaded: LoadedModel) -> int:
    """256 images at 64 px, scaled with the input area (16 at 224 px), a power of two in [4, 256]."""
    scale = (64 / loaded.preprocessing.input_size) ** 2
    return int(min(256, max(4, 2 ** round(math.log2(256 * scale)))))


def pooled(activation: Tensor, pool: Pool = "avg") -> Tensor:
    """(N, C, h, w) → (N, C) by global average or max pooling; anything else → (N, -1) flattened."""
    if activation.ndim == 4 and activation.shape[-1] * activation.shape[-2] > 1:
        return activation.amax(dim=(2, 3)) if pool == "max" else activation.mean(dim=(2, 3))
    return activation.flatten(1)


_FOLDED: dict[tuple[int, torch.dtype], tuple[tuple[int, ...], nn.Module]] = {}


def inference_copy(net: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of ``net`` for inference whose ``Conv2d → BatchNorm2d`` pairs (adjacent in a Sequential) are
    folded into one convolution, the BatchNorm replaced by ``Identity`` so every layer keeps its name and
    its output (about 1.15× faster on the built-in model); channels-last, in ``dtype``. Cached while the
    weights are unchanged."""
    versions = tuple(p._version for p in net.parameters())
    cached = _FOLDED.get((id(net), dtype))
    if cached is not None and cached[0] == versions:
        return cached[1]
    folded = copy.deepcopy(net)
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (a, conv), (b, bn) in zip(children, children[1:], strict=False):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                    module._modules[a] = fuse_conv_bn_eval(conv, bn)
                    module._modules[b] = nn.Identity()
    folded.eval().requires_grad_(False).to(dtype=dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]  # memory_format is accepted at run time
    _FOLDED[(id(net), dtype)] = (versions, folded)
    return folded


def reduced_precision(loaded: LoadedModel) -> torch.dtype | None:
    """bfloat16 when the model runs on a CPU with native bfloat16 (AVX-512 BF16 / AMX), else None (float32).
    Dataset codes use it: ~1.8× faster on the built-in model, cosine similarity to float32 ≥ 0.9999."""
    if loaded.device.type != "cpu" or os.environ.get("CONVLENS_CODES_FP32"):
        return None
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
        else None


def codes_of(loaded: LoadedModel, x: Tensor, layer: str, pool: Pool = "avg",
             dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Normalised model input (N, 3, S, S) on the model's device → codes (N, D) float32 and logits (N, K);
    ``dtype`` (bfloat16) runs a copy of the model and the input in that type, the outputs cast back to float32."""
    net = inference_copy(loaded.net, dtype or torch.float32)
    with torch.inference_mode(), hooks.capture(net, [layer], detach=True) as captured:
        logits = net(x if dtype is None else x.to(dtype))
        activation = captured[layer]
    return pooled(activation.float(), pool), logits.float()


def load_batch(loaded: LoadedModel, dataset: Dataset, indices: range | list[int]) -> Tensor:
    """Dataset images → normalised model input (B, 3, S, S) float32 on the CPU, channels-last in memory
    (one uint8 stack, converted and normalised in one step)."""
    p = loaded.preprocessing
    stack = np.stack([np.asarray(resize_and_crop(dataset.image(i), p.resize_size, p.input_size)) for i in indices])
    x = torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S), NHWC strides
    return p.normalize(x)


def batches(loaded: LoadedModel, dataset: Dataset, batch_size: int) -> Iterator[tuple[int, Tensor]]:
    """(start, model input on the model's device) per batch; the next batch is decoded while this one runs."""
    starts = list(range(0, len(dataset), batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_batch, loaded, dataset, range(starts[0], min(starts[0] + batch_size, len(dataset))))
        for k, start in enumerate(starts):
            x = pending.result()
            if k + 1 < len(starts):
                nxt = starts[k + 1]
                pending = pool.submit(load_batch, loaded, dataset, range(nxt, min(nxt + batch_size, len(dataset))))
            yield start, x.to(loaded.device)


@dataclass(frozen=True)
class Codes:
    """A dataset's codes: ``vectors`` (N, D) float32 (memory-mapped when cached), ``predicted`` (N,) classes."""

    vectors: np.ndarray
    predicted: np.ndarray
    layer: str
    key: str
    cached: bool
    seconds: float

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _atomic_npy(path: Path, shape: tuple[int, ...], dtype: type) -> tuple[np.memmap, Path]:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape), tmp


def dataset_codes(loaded: LoadedModel, dataset: Dataset, layer: str | None = None, pool: Pool = "avg",
                  batch_size: int | None = None, progress: Progress | None = None) -> Codes:
    """The codes of every image of ``dataset`` at ``layer`` (default: the model's code layer), from the
    cache when they are there."""
    started = time.perf_counter()
    layer = layer or loaded.code_layer
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no images")
    dtype = reduced_precision(loaded)
    key = cache_key(loaded, dataset, layer, pool, str(dtype or "float32"))
    folder = cache_dir("codes")
    vec_path, pred_path = folder / f"{key}.npy", folder / f"{key}.pred.npy"
    if vec_path.is_file() and pred_path.is_file():
        vectors = np.load(vec_path, mmap_mode="r")
        predicted = np.load(pred_path)
        if len(vectors) == len(dataset) == len(predicted):
            if progress is not None:
                progress(len(dataset), len(dataset))
            return Codes(vectors, predicted, layer, key, True, time.perf_counter() - started)
    batch_size = batch_size or default_batch_size(loaded)
    vectors_out: np.memmap | None = None
    predicted = np.empty(len(dataset), dtype=np.int64)
    tmp: Path | None = None
    try:
        for start, x in batches(loaded, dataset, batch_size):
            codes, logits = codes_of(loaded, x, layer, pool, dtype)
            if vectors_out is None:
                vectors_out, tmp = _atomic_npy(vec_path, (len(dataset), codes.shape[1]), np.float32)
            vectors_out[start:start + len(codes)] = codes.cpu().numpy()
            predicted[start:start + len(codes)] = logits.argmax(dim=1).cpu().numpy()
            if progress is not None:
                progress(start + len(codes), len(dataset))
        assert vectors_out is not None and tmp is not None
        vectors_out.flush()
        del vectors_out
        np.save(pred_path.with_suffix(".tmp.npy"), predicted)
        os.replace(tmp, vec_path)
        os.replace(pred_path.with_suffix(".tmp.npy"), pred_path)
        (folder / f"{key}.json").write_text(json.dumps({
            "model": loaded.name, "weights": loaded.weights, "layer": layer, "pool": pool, "dataset": dataset.name,
            "images": len(dataset), "fingerprint": dataset.fingerprint}))
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return Codes(np.load(vec_path, mmap_mode="r"), predicted, layer, key, False, time.perf_counter() - started)


PIXEL_SIZE = 32  # pixel-space neighbours compare images at 32×32 (3072 values), as CS231n's CIFAR-10 example


def pixel_row(img: Image.Image, size: int = PIXEL_SIZE) -> np.ndarray:
    """An image in pixel space: the centred square resized to ``size``×``size`` (bilinear), flattened (3·size²,)."""
    return np.asarray(resize_and_crop(img.convert("RGB"), size, size), dtype=np.uint8).reshape(-1)


def dataset_pixels(dataset: Dataset, size: int = PIXEL_SIZE, progress: Progress | None = None) -> np.ndarray:
    """Every image as :func:`pixel_row`: (N, 3·size²) uint8, memory-mapped, cached by the
    dataset fingerprint."""
    key = hashlib.sha256(json.dumps([dataset.fingerprint, size]).encode()).hexdigest()[:32]
    path = cache_dir("pixels") / f"{key}.npy"
    if path.is_file():
        cached = np.load(path, mmap_mode="r")
        if len(cached) == len(dataset):
            return cached
    out, tmp = _atomic_npy(path, (len(dataset), 3 * size * size), np.uint8)
    try:
        for i in range(len(dataset)):
            out[i] = pixel_row(dataset.image(i), size)
            if progress is not None and (i % 500 == 499 or i == len(dataset) - 1):
                progress(i + 1, len(dataset))
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(path, mmap_mode="r")
