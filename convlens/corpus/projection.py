"""2-D maps of CNN codes (CS231n lecture 12: "t-SNE of CNN codes") and the snapped thumbnail grid.

* PCA (exact SVD of the centred codes),
* t-SNE (van der Maaten & Hinton 2008; scikit-learn's Barnes-Hut, on the top 50 principal components),
* UMAP (McInnes et al. 2018; umap-learn, on the top 50 principal components; its k-nearest-neighbour graph
  computed exactly in torch up to 200,000 points — deterministic, multi-threaded, faster than NN-descent
  there —, initialised from PCA (a spectral start costs ~10 s at 10k points) and run for 200 layout epochs,
  umap-learn's own setting above 10,000 points),

all seeded, so the same codes give the same map. Results are cached next to the codes they come from.
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
from convlens.corpus.search import all_pairs_knn

Method = Literal["umap", "tsne", "pca"]
METHODS: tuple[str, ...] = ("umap", "tsne", "pca")
PCA_DIMS = 50  # t-SNE and UMAP run on this many principal components (the usual preprocessing)
EXACT_KNN_MAX = 200_000  # above this UMAP finds neighbours itself (NN-descent)
UMAP_EPOCHS = 200


def pca(vectors: np.ndarray, dims: int = 2) -> np.ndarray:
    """(N, D) → (N, min(dims, D)) float32: projections on the top principal axes (eigenvectors of the D×D
    covariance, in torch so it shares torch's thread pool; signs fixed so the largest loading of each axis
    is positive, which makes the result deterministic)."""
    x = torch.from_numpy(np.array(vectors, dtype=np.float64))
    x = x - x.mean(dim=0, keepdim=True)
    _, vectors_ = torch.linalg.eigh(x.T @ x)  # ascending eigenvalues
    axes = vectors_[:, -min(dims, x.shape[1]):].flip(1).T  # (dims, D), largest first
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    return (x @ (axes * signs).T).float().numpy()


def project(vectors: np.ndarray, method: Method = "umap", seed: int = 0, n_neighbors: int = 15,
            perplexity: float = 30.0) -> np.ndarray:
    """(N, D) codes → (N, 2) float32 points."""
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if method == "pca" or n < 4:
        out = pca(x, 2)
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1]))) if out.shape[1] < 2 else out
    reduced = pca(x, PCA_DIMS) if x.shape[1] > PCA_DIMS and n > PCA_DIMS else x
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed,
                    learning_rate="auto")
        return tsne.fit_transform(reduced).astype(np.float32)
    if method == "umap":
        import umap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state": seeded is serial
            k = min(n_neighbors, n - 1)
            knn = all_pairs_knn(reduced, k) if n <= EXACT_KNN_MAX else None
            reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, low_memory=True,
                                n_epochs=UMAP_EPOCHS, init="pca", precomputed_knn=(None, None, None) if knn is None else
                                (knn[0], knn[1], None))
            return np.asarray(reducer.fit_transform(reduced), dtype=np.float32)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


@dataclass(frozen=True)
class Projection:
    points: np.ndarray  # (N, 2) float32
    cached: bool
    seconds: float


def cached_projection(codes_key: str, vectors: np.ndarray, method: Method, seed: int, n_neighbors: int = 15,
                      perplexity: float = 30.0) -> Projection:
    """:func:`project`, cached by the codes' key and the projection's settings."""
    started = time.perf_counter()
    settings = [EXACT_KNN_MAX, "pca-init", UMAP_EPOCHS] if method == "umap" else []  # maps of older settings: stale
    key = hashlib.sha256(json.dumps([codes_key, method, seed, n_neighbors, perplexity, *settings]).encode()
                         ).hexdigest()[:32]
    path = cache_dir("projections") / f"{key}.npy"
    if path.is_file():
        points = np.load(path)
        if len(points) == len(vectors):
            return Projection(points, True, time.perf_counter() - started)
    points = project(vectors, method, seed, n_neighbors, perplexity)
    tmp = path.with_name(f".{key}.{os.getpid()}.tmp.npy")
    np.save(tmp, points)
    os.replace(tmp, path)
    return Projection(points, False, time.perf_counter() - started)


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
