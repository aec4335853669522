"""Maps of large code sets (convlens.corpus.projection): t-SNE and UMAP fitted on a seeded sample above
``fit_max`` and the other points placed among their nearest fitted points; PCA streamed over chunks, never
sampled; the cache keyed by the sampling. A small ``fit_max`` makes the sampled path run on 5,000 points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.manifold import trustworthiness
from threadpoolctl import threadpool_limits

from convlens.corpus import projection as P
from convlens.corpus.datasets import DATA_DIR_ENV

N, DIM, CLUSTERS, FIT = 5_000, 64, 8, 1_000


def clustered(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` codes in ``CLUSTERS`` well-separated groups, each with its own 4-d spread (64-d, so the maps go
    through the 50-component PCA first); returns (codes, labels)."""
    layout = np.random.default_rng(7)
    centres = layout.normal(0.0, 3.0, (CLUSTERS, DIM))
    bases = layout.normal(0.0, 1.0, (CLUSTERS, 4, DIM))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLUSTERS, n)
    z = rng.normal(0.0, 1.0, (n, 4))
    codes = centres[labels] + np.einsum("ni,nid->nd", z, bases[labels]) + rng.normal(0.0, 0.3, (n, DIM))
    return codes.astype(np.float32), labels


@pytest.fixture(scope="module")
def codes() -> tuple[np.ndarray, np.ndarray]:
    return clustered()


@pytest.fixture(scope="module")
def umap_maps(codes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(the full fit on all 5,000 points, the fit on 1,000 of them with 4,000 placed)."""
    x, _ = codes
    return P.project(x, "umap", seed=0), P.project(x, "umap", seed=0, fit_max=FIT)


def test_sampled_umap_is_as_trustworthy_as_the_full_fit(codes: tuple[np.ndarray, np.ndarray],
                                                        umap_maps: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = codes
    full, sampled = umap_maps
    t_full = trustworthiness(x, full, n_neighbors=10)
    t_sampled = trustworthiness(x, sampled, n_neighbors=10)
    assert t_full > 0.9
    assert t_sampled > t_full - 0.02, (t_sampled, t_full)
    # and the check can fail: the same fitted points with the placed ones shuffled among themselves
    fitted = P.sample_indices(N, FIT, 0)
    placed = np.setdiff1d(np.arange(N), fitted)
    shuffled = sampled.copy()
    shuffled[placed] = sampled[np.random.default_rng(0).permutation(placed)]
    assert trustworthiness(x, shuffled, n_neighbors=10) < t_full - 0.05


def test_placed_points_land_among_their_clusters_fitted_points(codes: tuple[np.ndarray, np.ndarray],
                                                               umap_maps: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = codes
    _, sampled = umap_maps
    fitted = P.sample_indices(N, FIT, 0)
    placed = np.setdiff1d(np.arange(N), fitted)
    assert len(fitted) == FIT and len(placed) == N - FIT
    d = np.linalg.norm(sampled[placed][:, None, :] - sampled[fitted][None, :, :], axis=-1)
    nearest_label = labels[fitted][d.argmin(1)]
    assert (nearest_label == labels[placed]).mean() > 0.99
    # inside the cloud of its cluster's fitted points, not beside it: within that cloud's own extent
    for c in range(CLUSTERS):
        cloud = sampled[fitted][labels[fitted] == c]
        own = sampled[placed][labels[placed] == c]
        radius = np.linalg.norm(cloud - cloud.mean(0), axis=1).max()
        assert np.percentile(np.linalg.norm(own - cloud.mean(0), axis=1), 99) <= radius


def test_the_fitted_points_keep_the_fit_of_the_sample(codes: tuple[np.ndarray, np.ndarray],
                                                      umap_maps: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = codes
    _, sampled = umap_maps
    fitted = P.sample_indices(N, FIT, 0)
    reduced = P.pca(x, P.PCA_DIMS)
    assert np.array_equal(sampled[fitted], P._fit(reduced[fitted], "umap", 0, 15, 30.0))


def test_sampled_maps_are_deterministic_for_a_seed(codes: tuple[np.ndarray, np.ndarray],
                                                   umap_maps: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = codes
    _, sampled = umap_maps
    assert np.array_equal(P.project(x, "umap", seed=0, fit_max=FIT), sampled)
    assert not np.array_equal(P.sample_indices(N, FIT, 0), P.sample_indices(N, FIT, 1))
    assert np.array_equal(P.sample_indices(N, FIT, 3), P.sample_indices(N, FIT, 3))


def test_tsne_above_its_limit_is_fitted_on_a_sample_and_places_the_rest() -> None:
    x, labels = clustered(1_200, seed=2)  # (t-SNE's seeding: tests/core/test_corpus.py)
    with threadpool_limits(1):  # scikit-learn's OpenMP t-SNE: ~6× slower on 2 threads of a busy 2-core machine
        a = P.project(x, "tsne", seed=0, fit_max=300)
    assert a.shape == (1_200, 2)
    fitted = P.sample_indices(1_200, 300, 0)
    placed = np.setdiff1d(np.arange(1_200), fitted)
    d = np.linalg.norm(a[placed][:, None, :] - a[fitted][None, :, :], axis=-1)
    assert (labels[fitted][d.argmin(1)] == labels[placed]).mean() > 0.98


def test_fitted_counts() -> None:
    for method in ("umap", "tsne"):
        limit = P.FIT_MAX[method]
        assert limit is not None and P.fitted_count(method, 1_000_000) == limit < 1_000_000
    assert P.fitted_count("pca", 1_000_000) == 1_000_000  # PCA is exact at any size
    assert P.fitted_count("umap", 999, fit_max=1_000) == 999 and P.fitted_count("umap", 1_001, fit_max=1_000) == 1_000


def test_streamed_pca_matches_one_in_memory_decomposition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = clustered(2_000, seed=3)
    path = tmp_path / "codes.npy"
    np.save(path, x)
    monkeypatch.setattr(P, "CHUNK_BYTES", 8 * DIM * 128)  # 128 rows a chunk: 16 chunks
    streamed = P.pca(np.load(path, mmap_mode="r"), 3)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]  # the same sign rule
    assert np.allclose(streamed, centred @ vt[:3].T, atol=1e-3, rtol=1e-4)


def test_cache_hit_on_reopen_and_a_new_map_for_new_sampling(codes: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    x, _ = codes
    x = x[:2_000]
    first = P.cached_projection("k", x, "umap", 0, fit_max=500)
    again = P.cached_projection("k", x, "umap", 0, fit_max=500)
    assert not first.cached and again.cached and np.array_equal(first.points, again.points)
    assert first.fitted == again.fitted == 500
    other = P.cached_projection("k", x, "umap", 0, fit_max=800)
    assert not other.cached and other.fitted == 800 and not np.array_equal(other.points, first.points)
    full = P.cached_projection("k", x, "umap", 0, fit_max=2_000)
    assert not full.cached and full.fitted == 2_000
    # a map fitted on all points does not depend on the threshold: any fit_max ≥ N finds it
    assert P.cached_projection("k", x, "umap", 0, fit_max=10**9).cached
    assert P.cached_projection("k", x, "pca", 0).fitted == 2_000
    assert len(list((tmp_path / ".cache" / "projections").glob("*.npy"))) == 4
