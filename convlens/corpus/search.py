"""Exact k-nearest-neighbour search in chunks (bounded memory for up to millions of vectors).

:func:`knn` answers queries against a database; :func:`all_pairs_knn` gives every row's neighbours among
the rows themselves (UMAP's graph). For :func:`knn` the database (N, D) — typically a memory-mapped
``.npy`` of CNN codes or raw pixels — is read ``chunk`` rows at a time (by default as many as fit in
:data:`CHUNK_BYTES` as float64); each chunk's distances to the queries are computed as
``|q|² - 2 q·x + |x|²`` in float64 (in float32 the cancellation costs pixel distances ~30 units) and merged
into a running top-k, so memory is O(chunk·D + Q·chunk + Q·k), never O(N).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Metric = Literal["l2", "cosine"]
CHUNK_BYTES = 64 * 1024 * 1024


def knn(queries: np.ndarray, database: np.ndarray, k: int, metric: Metric = "l2",
        chunk: int | None = None, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, D) queries against (N, D) → (indices (Q, k') int64, distances (Q, k') float32), nearest first,
    k' = min(k, N). ``l2``: Euclidean distance; ``cosine``: 1 - cosine similarity. ``exclude[q]`` (or -1) is a
    database row never returned for query q (the query itself, when it comes from the database).
    Ties are broken by the lower index."""
    q = torch.from_numpy(np.array(queries, dtype=np.float64))
    if q.ndim != 2 or database.ndim != 2 or q.shape[1] != database.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and database {tuple(database.shape)} must be (Q, D) and (N, D)")
    n = len(database)
    chunk = chunk or max(1, CHUNK_BYTES // (8 * max(1, database.shape[1])))
    k = min(k, n - (0 if exclude is None else 1))
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    q_sq = (q * q).sum(1, keepdim=True)
    best_d = torch.full((len(q), 0), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((len(q), 0), dtype=torch.int64)
    for start in range(0, n, chunk):
        x = torch.from_numpy(np.array(database[start:start + chunk], dtype=np.float64))
        if metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        d = (q_sq - 2.0 * q @ x.T + (x * x).sum(1)[None, :]).clamp_min_(0)
        idx = torch.arange(start, start + len(x)).expand(len(q), -1)
        if exclude is not None:
            ex = torch.as_tensor(np.asarray(exclude, dtype=np.int64))[:, None]
            d = torch.where(idx == ex, torch.full_like(d, float("inf")), d)
        all_d = torch.cat([best_d, d], dim=1)
        all_i = torch.cat([best_i, idx], dim=1)
        # stable: sort by index first, then by distance, so equal distances keep the lower index first
        order = torch.argsort(all_i, dim=1)
        all_d, all_i = all_d.gather(1, order), all_i.gather(1, order)
        top = torch.sort(all_d, dim=1, stable=True).indices[:, :k]
        best_d, best_i = all_d.gather(1, top), all_i.gather(1, top)
    dist = best_d.sqrt() if metric == "l2" else best_d / 2.0  # |a-b|² = 2 - 2cos for unit vectors
    return best_i.numpy(), dist.numpy().astype(np.float32)


def all_pairs_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) in memory → the ``k`` nearest rows of every row by Euclidean distance, itself first: indices
    (N, k) int64 and distances (N, k) float32, ascending (UMAP's neighbour graph). Unlike :func:`knn` (any
    queries against a memory-mapped database, float64, running merge, stable ties) every row is both query
    and database, so one float32 matmul and one top-k per block of rows suffice, with no merge."""
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    sq = (data * data).sum(dim=1)
    rows = max(1, CHUNK_BYTES // (4 * len(data)))
    idx, dist = [], []
    for start in range(0, len(data), rows):
        block = data[start:start + rows]
        # |b|² - 2a·b ranks the rows of a block as |a - b|² does (|a|² is the same along a row): one matmul
        partial = torch.addmm(sq[None, :], block, data.T, alpha=-2.0)
        partial[torch.arange(len(block)), torch.arange(start, start + len(block))] = -torch.inf  # itself first
        values, order = torch.topk(partial, k, dim=1, largest=False, sorted=True)
        values[:, 0] = -sq[start:start + rows]
        idx.append(order)
        dist.append((values + sq[start:start + rows, None]).clamp_min_(0.0).sqrt_())
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()
