"""2-D maps of CNN codes (CS231n lecture 12: "t-SNE of CNN codes") and the snapped thumbnail grid.

* PCA (eigenvectors of the code covariance, accumulated in float64 over chunks of rows, so it is exact at any
  N and never holds more than a chunk of the codes in float64 — the codes may be a memory-mapped file),
* t-SNE (van der Maaten & Hinton 2008; scikit-learn's Barnes-Hut, on the top 50 principal components),
* UMAP (McInnes et al. 2018; umap-learn, on the top 50 principal components; its k-nearest-neighbour graph
  computed exactly in torch up to 200,000 points — deterministic, multi-threaded, faster than NN-descent
  there —, initialised from PCA (a spectral start costs ~10 s at 10k points) and run for 200 layout epochs,
  umap-learn's own setting above 10,000 points),

all seeded, so the same codes give the same map. Results are cached next to the codes they come from.

**Large sets** (``docs/corpus.md``, "A projection for a million points"). t-SNE and UMAP are fitted on at
most ``fit_max`` points (:data:`FIT_MAX`: 50,000 for UMAP, 10,000 for t-SNE); above that, on a seeded uniform
sample of ``fit_max`` points, and every other point is *placed* at the weighted mean of the map positions of
its :data:`PLACE_K` nearest fitted points in the same 50-component PCA space, weights ``exp(-(d - d₁) / σ)``
(``d₁`` the nearest distance, ``σ`` the mean of ``d - d₁``: a local scale, as UMAP's membership strengths
have). The neighbours come from a faiss inverted file over the fitted points (``nlist`` = 4·√fit_max lists,
:data:`PLACE_NPROBE` scanned a query). Placing 50,000 of 100,000 synthetic 128-d codes among the other
50,000 on a loaded 2-core machine: this search found 99.999 % of the exact 10 neighbours in 33 s of wall time
with its training (5 s of CPU); exact search took 88 s (faiss flat) or 59 s (torch matmul + top-k) with the
same trustworthiness (0.9973); umap-learn's ``transform`` (which needs a UMAP fitted with its NN-descent
index) took 413 s and scored 0.9951. Thresholds:
UMAP's full fit at 100,000 points took 398 s, the 50,000-point sample + placement 95 s, same trustworthiness;
t-SNE (Barnes-Hut, 1,000 iterations) on a 20,000-point sample took 666 s, hence 10,000 (the built-in
dataset's size, where it always ran). ``Projection.fitted`` says how many points the method saw. PCA is never
sampled: streamed, it is exact at any N.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from convlens.corpus.codes import cache_dir
from convlens.corpus.search import CHUNK_BYTES, all_pairs_knn

Method = Literal["umap", "tsne", "pca"]
METHODS: tuple[str, ...] = ("umap", "tsne", "pca")
PCA_DIMS = 50  # t-SNE and UMAP run on this many principal components (the usual preprocessing)
EXACT_KNN_MAX = 200_000  # above this UMAP finds neighbours itself (NN-descent)
UMAP_EPOCHS = 200
FIT_MAX: dict[str, int | None] = {"umap": 50_000, "tsne": 10_000, "pca": None}  # None: always fitted on all
PLACE_K = 10  # a placed point is the weighted mean of this many nearest fitted points
PLACE_NPROBE = 16  # inverted lists scanned per placed point
PLACE_BATCH = 65_536  # placed points per search call (bounded memory)
SAMPLING = ["sample-place", PLACE_K, PLACE_NPROBE, "ivf-4sqrt", "exp-local"]  # in the cache key when sampled


def _rows(dim: int) -> int:
    return max(1, CHUNK_BYTES // (8 * max(1, dim)))


def pca_axes(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) → (mean (D,), axes (min(dims, D), D)) float64: the top principal axes (eigenvectors of the D×D
    covariance, largest first, signs fixed so the largest loading of each axis is positive, which makes the
    result deterministic). Two passes over ``vectors`` in chunks of rows (mean, then the centred D×D scatter,
    both in float64), so a memory-mapped (N, D) file is never copied whole."""
    n, d = vectors.shape
    rows = _rows(d)
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, n, rows):
        total += torch.from_numpy(np.asarray(vectors[start:start + rows], dtype=np.float64)).sum(dim=0)
    mean = total / max(n, 1)
    scatter = torch.zeros((d, d), dtype=torch.float64)
    for start in range(0, n, rows):
        x = torch.from_numpy(np.asarray(vectors[start:start + rows], dtype=np.float64)) - mean
        scatter.addmm_(x.T, x)
    _, eig = torch.linalg.eigh(scatter)  # ascending eigenvalues
    axes = eig[:, -min(dims, d):].flip(1).T  # (dims, D), largest first
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    return mean.numpy(), (axes * signs).numpy()


def pca(vectors: np.ndarray, dims: int = 2) -> np.ndarray:
    """(N, D) → (N, min(dims, D)) float32: projections on the top principal axes (:func:`pca_axes`), computed
    a chunk of rows at a time in float64."""
    mean, axes = pca_axes(vectors, dims)
    m, a = torch.from_numpy(mean), torch.from_numpy(axes)
    out = np.empty((len(vectors), len(axes)), dtype=np.float32)
    rows = _rows(vectors.shape[1])
    for start in range(0, len(vectors), rows):
        x = torch.from_numpy(np.asarray(vectors[start:start + rows], dtype=np.float64)) - m
        out[start:start + rows] = (x @ a.T).float().numpy()
    return out


def fitted_count(method: str, n: int, fit_max: int | None = None) -> int:
    """How many of ``n`` points ``method`` is fitted on: all of them, or ``fit_max`` (default
    :data:`FIT_MAX`) when there are more and the method is sampled (t-SNE, UMAP; PCA never is)."""
    limit = FIT_MAX.get(method) if fit_max is None else fit_max
    return n if method == "pca" or limit is None or n <= limit else max(int(limit), 4)


def sample_indices(n: int, size: int, seed: int) -> np.ndarray:
    """The fitted points of a sampled map: ``size`` of ``range(n)``, seeded, uniform, ascending."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def place(queries: np.ndarray, fitted: np.ndarray, fitted_points: np.ndarray, k: int = PLACE_K,
          nprobe: int = PLACE_NPROBE) -> np.ndarray:
    """(Q, d) points → (Q, 2) float32: each at the weighted mean of the 2-D positions ``fitted_points`` of its
    ``k`` nearest rows of ``fitted`` (F, d), weights ``exp(-(dist - nearest) / σ)``, σ the mean of
    ``dist - nearest`` over the ``k`` (the local scale). Neighbours from a faiss inverted file
    (``nlist`` = 4·√F, at most F / 39, ``nprobe`` lists scanned a query), ``PLACE_BATCH`` queries at a time."""
    import faiss

    f = np.ascontiguousarray(fitted, dtype=np.float32)
    dim = f.shape[1]
    k = min(k, len(f))
    nlist = max(1, min(int(4 * np.sqrt(len(f))), len(f) // 39))
    quantiser = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, nlist)
    index.cp.seed = 1234  # k-means of the lists: fixed (faiss's default too, stated here)
    index.train(f)
    index.add(f)
    index.nprobe = min(nprobe, nlist)
    pos = np.asarray(fitted_points, dtype=np.float64)
    out = np.empty((len(queries), 2), dtype=np.float32)
    for start in range(0, len(queries), PLACE_BATCH):
        q = np.ascontiguousarray(queries[start:start + PLACE_BATCH], dtype=np.float32)
        sq, idx = index.search(q, k)
        found = idx >= 0  # an inverted file may return fewer than k (marked -1) when the probed lists are small
        dist = np.sqrt(np.maximum(np.where(found, sq, np.inf), 0.0))
        excess = dist - dist[:, :1]
        scale = np.where(found, excess, 0.0).sum(1, keepdims=True) / np.maximum(found.sum(1, keepdims=True), 1)
        w = np.where(found, np.exp(-excess / np.maximum(scale, 1e-12)), 0.0)
        w[~found.any(1), 0] = 1.0  # nothing found (cannot happen with nprobe ≥ 1 on a trained index): nearest list
        out[start:start + len(q)] = (np.einsum("qk,qkc->qc", w, pos[np.where(found, idx, 0)])
                                     / w.sum(1, keepdims=True)).astype(np.float32)
    return out


def _fit(reduced: np.ndarray, method: Method, seed: int, n_neighbors: int, perplexity: float) -> np.ndarray:
    """t-SNE or UMAP of (n, d) points already reduced to principal components → (n, 2) float32."""
    n = len(reduced)
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed,
                    learning_rate="auto")
        return tsne.fit_transform(reduced).astype(np.float32)
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state": seeded is serial
        k = min(n_neighbors, n - 1)
        knn = all_pairs_knn(reduced, k) if n <= EXACT_KNN_MAX else None
        reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, low_memory=True,
                            n_epochs=UMAP_EPOCHS, init="pca", precomputed_knn=(None, None, None) if knn is None else
                            (knn[0], knn[1], None))
        return np.asarray(reducer.fit_transform(reduced), dtype=np.float32)


def project(vectors: np.ndarray, method: Method = "umap", seed: int = 0, n_neighbors: int = 15,
            perplexity: float = 30.0, fit_max: int | None = None) -> np.ndarray:
    """(N, D) codes (an array or a memory-mapped file) → (N, 2) float32 points. t-SNE and UMAP are fitted on
    :func:`fitted_count` of them (a seeded sample above ``fit_max``, default :data:`FIT_MAX`) and the rest
    are :func:`place`-d."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not isinstance(vectors, np.ndarray):  # a memory-mapped file stays one (np.memmap is an ndarray)
        vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method == "pca" or n < 4:
        out = pca(vectors, 2)
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))) if out.shape[1] < 2 else out
    reduced = pca(vectors, PCA_DIMS) if vectors.shape[1] > PCA_DIMS and n > PCA_DIMS else \
        np.asarray(vectors, dtype=np.float32)
    fitted = fitted_count(method, n, fit_max)
    if fitted >= n:
        return _fit(reduced, method, seed, n_neighbors, perplexity)
    chosen = sample_indices(n, fitted, seed)
    fit_points = _fit(reduced[chosen], method, seed, n_neighbors, perplexity)
    rest = np.ones(n, dtype=bool)
    rest[chosen] = False
    out = np.empty((n, 2), dtype=np.float32)
    out[chosen] = fit_points
    out[rest] = place(reduced[rest], reduced[chosen], fit_points)
    return out


@dataclass(frozen=True)
class Projection:
    points: np.ndarray  # (N, 2) float32
    cached: bool
    seconds: float
    fitted: int  # how many of the N points the method was fitted on (N unless it was fitted on a sample)


def projection_key(codes_key: str, n: int, method: Method, seed: int, n_neighbors: int = 15,
                   perplexity: float = 30.0, fit_max: int | None = None) -> str:
    """The cache key of a map: the codes' key, the method's settings and, when the map is fitted on a sample,
    the sample size and the placement's settings (a map fitted on all points keeps its key whatever the
    threshold, since it does not depend on it)."""
    settings: list[object] = [EXACT_KNN_MAX, "pca-init", UMAP_EPOCHS] if method == "umap" else []
    fitted = fitted_count(method, n, fit_max)
    if fitted < n:
        settings += [fitted, *SAMPLING]
    return hashlib.sha256(json.dumps([codes_key, method, seed, n_neighbors, perplexity, *settings]).encode()
                          ).hexdigest()[:32]


def cached_projection(codes_key: str, vectors: np.ndarray, method: Method, seed: int, n_neighbors: int = 15,
                      perplexity: float = 30.0, fit_max: int | None = None) -> Projection:
    """:func:`project`, cached by :func:`projection_key`. A reopen is one ``np.load`` of the (N, 2) float32
    points (8 MB at a million points); ``vectors`` is then only measured, never read."""
    started = time.perf_counter()
    n = len(vectors)
    fitted = fitted_count(method, n, fit_max)
    key = projection_key(codes_key, n, method, seed, n_neighbors, perplexity, fit_max)
    path = cache_dir("projections") / f"{key}.npy"
    if path.is_file():
        points = np.load(path)
        if len(points) == n:
            return Projection(points, True, time.perf_counter() - started, fitted)
    points = project(vectors, method, seed, n_neighbors, perplexity, fit_max)
    tmp = path.with_name(f".{key}.{os.getpid()}.tmp.npy")
    np.save(tmp, points)
    os.replace(tmp, path)
    return Projection(points, False, time.perf_counter() - started, fitted)


def snap_to_grid(points: np.ndarray, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's "t-SNE grid": ``side``² of the points (a seeded sample when there are more) assigned one
    to one to the cells of a ``side``×``side`` grid so that the total squared distance from each point
    (rescaled to the unit square) to its cell centre is smallest (Hungarian algorithm, scipy).

    Returns (indices of the chosen points (M,), their cells (M,) as row-major cell numbers), M = min(N, side²).
    """
    from scipy.optimize import linear_sum_assignment

    n = len(points)
    cells = side * side
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=cells, replace=False)) if n > cells else np.arange(n)
    p = np.asarray(points, dtype=np.float64)[chosen]
    p = (p - p.min(axis=0)) / np.maximum(np.ptp(p, axis=0), 1e-12)
    centres = (np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2) + 0.5) / side
    centres = centres[:, ::-1]  # (x, y) per cell: column then row, row 0 at the top
    centres = np.stack([centres[:, 0], 1.0 - centres[:, 1]], axis=1)  # the plot's y grows upwards
    cost = ((p[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return chosen[rows], cols


def warm_up() -> float:
    """Compile UMAP's numba kernels on a tiny random set, through the same path as a real map (precomputed
    neighbours): the first fit of a process pays tens of seconds of compilation; a server pays it once at
    start, in the background. Returns the seconds spent."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)  # 4 far-apart blobs: a graph of several components, as real codes give
    blobs = rng.random((400, 8), dtype=np.float32) + 100.0 * np.repeat(np.eye(4, 8, dtype=np.float32), 100, axis=0)
    project(blobs, "umap", seed=0)
    return time.perf_counter() - started
