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
from collections.abc import Callable, Iterable, Iterator
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
RAY_ADDRESS_ENV = "CONVLENS_RAY_ADDRESS"  # a Ray cluster (HOST:PORT or auto): codes are computed there
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


def coded(loaded: LoadedModel, x: Tensor, layer: str, pool: Pool = "avg",
          dtype: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`codes_of` as the dataset cache stores it: codes (N, D) float32, predicted classes (N,) and their
    softmax probabilities (N,) float32."""
    codes, logits = codes_of(loaded, x, layer, pool, dtype)
    top = logits.softmax(dim=1).max(dim=1)
    return codes.cpu().numpy(), top.indices.cpu().numpy(), top.values.cpu().numpy()


def load_batch(loaded: LoadedModel, dataset: Dataset, indices: range | list[int]) -> Tensor:
    """Dataset images → normalised model input (B, 3, S, S) float32 on the CPU, channels-last in memory
    (one uint8 stack, converted and normalised in one step)."""
    return images_input(loaded, (dataset.image(i) for i in indices))


def images_input(loaded: LoadedModel, images: Iterable[Image.Image]) -> Tensor:
    """RGB images → normalised model input (B, 3, S, S), as :func:`load_batch` (which reads them from a dataset)."""
    p = loaded.preprocessing
    stack = np.stack([np.asarray(resize_and_crop(img, p.resize_size, p.input_size)) for img in images])
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
    """A dataset's codes: ``vectors`` (N, D) float32 (memory-mapped when cached), ``predicted`` (N,) classes
    and ``confidence`` (N,) float32, the softmax probability of the predicted class."""

    vectors: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
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
                  batch_size: int | None = None, progress: Progress | None = None, ray: str | None = None,
                  ray_actors: int | None = None) -> Codes:
    """The codes of every image of ``dataset`` at ``layer`` (default: the model's code layer), from the
    cache when they are there.

    Computed on a Ray cluster when one is asked for: ``ray`` (an address ``HOST:PORT`` or ``"auto"``), else
    ``$CONVLENS_RAY_ADDRESS``; in this process when neither is set. Same cache key, same files, same codes
    either way (see :mod:`convlens.corpus.ray_codes`; ``ray_actors`` caps its model actors). A cluster that
    was asked for and cannot be used raises ``ClusterUnavailable``; nothing falls back to this process."""
    started = time.perf_counter()
    layer = layer or loaded.code_layer
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no images")
    dtype = reduced_precision(loaded)
    key = cache_key(loaded, dataset, layer, pool, str(dtype or "float32"))
    folder = cache_dir("codes")
    vec_path, pred_path, conf_path = (folder / f"{key}{suffix}.npy" for suffix in ("", ".pred", ".conf"))
    if vec_path.is_file() and pred_path.is_file() and conf_path.is_file():
        vectors = np.load(vec_path, mmap_mode="r")
        predicted, confidence = np.load(pred_path), np.load(conf_path)
        if len(vectors) == len(dataset) == len(predicted) == len(confidence):
            if progress is not None:
                progress(len(dataset), len(dataset))
            return Codes(vectors, predicted, confidence, layer, key, True, time.perf_counter() - started)
    address = cluster_address(ray)
    batch_size = batch_size or default_batch_size(loaded)
    out = _CodesFile(vec_path, len(dataset))
    try:
        if address is None:
            for start, x in batches(loaded, dataset, batch_size):
                vectors, predicted, confidence = coded(loaded, x, layer, pool, dtype)
                out.write(slice(start, start + len(vectors)), vectors, predicted, confidence)
                if progress is not None:
                    progress(start + len(vectors), len(dataset))
        else:
            from convlens.corpus import ray_codes

            ray_codes.compute(address, loaded, dataset, layer, pool, dtype, batch_size, out.write, progress,
                              ray_actors)
        out.commit(pred_path, conf_path)
        (folder / f"{key}.json").write_text(json.dumps({
            "model": loaded.name, "weights": loaded.weights, "layer": layer, "pool": pool, "dataset": dataset.name,
            "images": len(dataset), "fingerprint": dataset.fingerprint}))
    finally:
        out.discard()
    return Codes(np.load(vec_path, mmap_mode="r"), out.predicted, out.confidence, layer, key, False,
                 time.perf_counter() - started)


def cluster_address(requested: str | None = None) -> str | None:
    """The Ray cluster codes are computed on: ``requested``, else ``$CONVLENS_RAY_ADDRESS``; None (in this
    process) when neither is set. ``"auto"`` is resolved by :func:`convlens.corpus.ray_codes.connect`."""
    address = (requested or os.environ.get(RAY_ADDRESS_ENV) or "").strip()
    return address or None


class _CodesFile:
    """The cache files being written: codes (memory-mapped, under a temporary name, created at the first rows),
    predicted classes and confidences in memory. Rows may arrive in any order; :meth:`commit` renames the codes
    file into place last, once every row was written; :meth:`discard` drops what was not committed."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.vectors: np.memmap | None = None
        self.tmp: Path | None = None
        self.predicted = np.empty(n, dtype=np.int64)
        self.confidence = np.empty(n, dtype=np.float32)
        self.written = np.zeros(n, dtype=bool)

    def write(self, rows: slice | np.ndarray, vectors: np.ndarray, predicted: np.ndarray,
              confidence: np.ndarray) -> None:
        if self.vectors is None:
            self.vectors, self.tmp = _atomic_npy(self.path, (self.n, vectors.shape[1]), np.float32)
        self.vectors[rows] = vectors
        self.predicted[rows] = predicted
        self.confidence[rows] = confidence
        self.written[rows] = True

    def commit(self, pred_path: Path, conf_path: Path) -> None:
        if self.vectors is None or self.tmp is None or not self.written.all():
            missing = int(self.n - self.written.sum())
            raise RuntimeError(f"codes incomplete: {missing} of {self.n} images have no code")
        self.vectors.flush()
        self.vectors = None
        for path, column in ((pred_path, self.predicted), (conf_path, self.confidence)):
            np.save(path.with_suffix(".tmp.npy"), column)
            os.replace(path.with_suffix(".tmp.npy"), path)
        os.replace(self.tmp, self.path)  # last: the codes file is what marks the cache entry complete

    def discard(self) -> None:
        self.vectors = None
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()


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
