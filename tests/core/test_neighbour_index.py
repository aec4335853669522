"""The approximate-neighbour index (convlens.corpus.index): exact below the threshold, recall of the faiss index
against exact search above it, the index file kept beside the cached codes, reused, rebuilt when the codes
change and when the file is damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from convlens.corpus import datasets as store
from convlens.corpus import index as X
from convlens.corpus.search import knn
from convlens.models import load_model
from convlens.pipeline import run

pytest.importorskip("faiss")


@pytest.fixture(autouse=True)
def _quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    faiss.omp_set_num_threads(1)
    X.forget()


def cached(path: Path, rows: np.ndarray) -> np.ndarray:
    """``rows`` saved as a cache file and memory-mapped back, as dataset_codes returns them."""
    np.save(path, rows)
    return np.load(path, mmap_mode="r")


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def test_recall_at_10_on_20000_random_codes(tmp_path: Path) -> None:
    """Structureless Gaussian codes (the hardest case for an index) → HNSW, chosen by size; its top 10 hold
    ≥ 95 % of the exact top 10, and what it returns carries exact distances, nearest first."""
    rng = np.random.default_rng(0)
    codes = cached(tmp_path / "codes.npy", rng.normal(size=(20_000, 128)).astype(np.float32))
    queries = rng.normal(size=(200, 128)).astype(np.float32)
    truth, _ = knn(queries, codes, 10)
    found = X.nearest(queries, codes, 10, exact_max=10_000)
    assert found.method == "hnsw" and not found.exact
    assert recall(found.indices, truth) >= 0.95
    brute = np.linalg.norm(queries[:, None, :] - np.asarray(codes)[found.indices], axis=2)
    assert np.allclose(found.distances, brute, atol=1e-4) and (np.diff(found.distances, axis=1) >= 0).all()


def test_below_the_threshold_the_answer_is_the_exact_one(tmp_path: Path) -> None:
    """3,000 rows (≤ EXACT_MAX): the brute-force answer, to the last bit, and no index file is written."""
    rng = np.random.default_rng(1)
    codes = cached(tmp_path / "codes.npy", rng.normal(size=(3_000, 16)).astype(np.float32))
    query = np.asarray(codes[5:6]) + 0.01
    for metric in ("l2", "cosine"):
        found = X.nearest(query, codes, 7, metric, exclude=np.array([5]))  # type: ignore[arg-type]
        idx, dist = knn(query, codes, 7, metric, exclude=np.array([5]))  # type: ignore[arg-type]
        assert found.exact and np.array_equal(found.indices, idx) and np.array_equal(found.distances, dist)
        assert 5 not in found.indices[0]
    brute = np.linalg.norm(np.asarray(codes, dtype=np.float64) - query, axis=1)
    plain = X.nearest(query, codes, 4)
    assert plain.indices[0].tolist() == np.argsort(brute, kind="stable")[:4].tolist()
    assert plain.indices[0, 0] == 5 and np.allclose(plain.distances[0], np.sort(brute)[:4], atol=1e-5)
    assert not list(tmp_path.glob("*.faiss*"))


def test_by_hand_through_the_index_and_its_tie_order(tmp_path: Path) -> None:
    """Points on a line, forced through the index: the neighbours of 3.4 among 0, 10, 3, 4, -2, 2.5 (and 200
    far points) are 3, 4, 2.5 at 0.4, 0.6, 0.9; two rows at equal distance keep the lower index first."""
    far = 1000.0 + np.arange(200, dtype=np.float32)[:, None]
    database = np.concatenate([np.array([[0.0], [10.0], [3.0], [4.0], [-2.0], [2.5]], dtype=np.float32), far])
    codes = cached(tmp_path / "line.npy", database)
    found = X.nearest(np.array([[3.4]], dtype=np.float32), codes, 3, exact_max=10)
    assert found.method == "hnsw" and found.indices.tolist() == [[2, 3, 5]]
    assert np.allclose(found.distances, [[0.4, 0.6, 0.9]], atol=1e-5)
    tie = X.nearest(np.array([[2.75]], dtype=np.float32), codes, 2, exact_max=10)
    assert tie.indices.tolist() == [[2, 5]] and tie.distances.tolist() == [[0.25, 0.25]]  # 3.0 and 2.5, exactly


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_clustered_codes_through_the_index_match_exact_search(tmp_path: Path, method: str, metric: str) -> None:
    """Well-separated clusters, queries from the set with themselves excluded: both index kinds return the
    exact answer (indices and float64 distances), since the re-ranking is the exact search's own."""
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 10, (20, 32))
    rows = (centres[rng.integers(0, 20, 4_000)] + rng.normal(size=(4_000, 32))).astype(np.float32)
    codes = cached(tmp_path / "codes.npy", rows)
    picks = rng.choice(4_000, 50, replace=False)
    queries = np.asarray(codes[picks])
    found = X.nearest(queries, codes, 10, metric, exclude=picks, exact_max=100,  # type: ignore[arg-type]
                      hnsw_max=10**9 if method == "hnsw" else 100)
    idx, dist = knn(queries, codes, 10, metric, exclude=picks)  # type: ignore[arg-type]
    assert found.method == method
    assert recall(found.indices, idx) >= 0.99
    same = (found.indices == idx).all(axis=1)
    assert same.mean() >= 0.9 and np.array_equal(found.distances[same], dist[same])


def test_pixels_are_stored_losslessly(tmp_path: Path) -> None:
    """uint8 pixel rows in L2: the 8-bit-direct storage holds them exactly, so where the index returns the
    exact neighbours it gives their exact distances, and each image finds its duplicate at distance 0."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (1_000, 48), dtype=np.uint8)
    pixels = cached(tmp_path / "pixels.npy", np.concatenate([base, base[:10]]))  # rows 1000.. copy rows 0..9
    queries = np.asarray(pixels[:10], dtype=np.float32)
    for hnsw_max in (10**9, 0):
        found = X.nearest(queries, pixels, 1, exclude=np.arange(10), exact_max=100, hnsw_max=hnsw_max)
        assert found.indices[:, 0].tolist() == list(range(1_000, 1_010)) and (found.distances == 0).all()


def test_the_index_file_is_reused_and_rebuilt_when_the_codes_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "0123abcd.npy"
    codes = cached(path, rng.normal(size=(2_000, 8)).astype(np.float32))
    before = X.builds()
    first = X.nearest(codes[:3], codes, 5, exact_max=100)
    index_file = tmp_path / "0123abcd.l2.faiss"
    assert X.builds() == before + 1 and index_file.is_file() and (tmp_path / "0123abcd.l2.faiss.json").is_file()
    stamp = index_file.stat().st_mtime_ns
    X.forget()  # a new process: nothing in memory, the file is read
    again = X.nearest(codes[:3], codes, 5, exact_max=100)
    assert X.builds() == before + 1 and index_file.stat().st_mtime_ns == stamp
    assert np.array_equal(first.indices, again.indices)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # touched, same content: re-stamped, not rebuilt
    X.forget()
    X.nearest(codes[:3], codes, 5, exact_max=100)
    assert X.builds() == before + 1 and index_file.stat().st_mtime_ns == stamp
    # same cache key, new codes (e.g. recomputed): the old index would answer with the old rows
    new = rng.normal(size=(2_000, 8)).astype(np.float32)
    codes = cached(path, new)
    found = X.nearest(new[7:8], codes, 1, exact_max=100)
    assert X.builds() == before + 2 and found.indices.tolist() == [[7]] and found.distances[0, 0] == 0
    # another metric is another index beside the same codes
    X.nearest(new[7:8], codes, 1, "cosine", exact_max=100)
    assert X.builds() == before + 3 and (tmp_path / "0123abcd.cosine.faiss").is_file()


@pytest.mark.parametrize("damage", ["truncated", "garbage same size", "missing", "record missing", "record garbage"])
def test_a_damaged_or_missing_index_is_rebuilt(tmp_path: Path, damage: str) -> None:
    rng = np.random.default_rng(5)
    codes = cached(tmp_path / "k.npy", rng.normal(size=(1_500, 8)).astype(np.float32))
    expected = X.nearest(codes[:4], codes, 6, exact_max=100)
    index_file, record = tmp_path / "k.l2.faiss", tmp_path / "k.l2.faiss.json"
    size = index_file.stat().st_size
    if damage == "truncated":
        index_file.write_bytes(index_file.read_bytes()[: size // 3])
    elif damage == "garbage same size":  # the record still matches the size: the checksum catches it
        index_file.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    elif damage == "missing":
        index_file.unlink()
    elif damage == "record missing":
        record.unlink()
    else:
        record.write_text("{not json")
    X.forget()
    before = X.builds()
    found = X.nearest(codes[:4], codes, 6, exact_max=100)
    assert X.builds() == before + 1
    assert np.array_equal(found.indices, expected.indices) and np.array_equal(found.distances, expected.distances)
    assert json.loads(record.read_text())["index_bytes"] == index_file.stat().st_size


def test_an_array_in_memory_or_a_slice_of_a_cache_file_is_searched_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    rows = rng.normal(size=(500, 4)).astype(np.float32)
    codes = cached(tmp_path / "s.npy", rows)
    assert X.nearest(rows[:2], rows, 3, exact_max=10).exact
    assert X.nearest(rows[:2], codes[:400], 3, exact_max=10).exact  # not the whole file: not its index
    assert not list(tmp_path.glob("*.faiss"))


def test_the_technique_says_whether_its_search_was_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    store.builtin("set", 30)
    loaded = load_model("builtin")
    [out] = run(loaded, "neighbours", [{}], params={"dataset": "set", "query": 7, "k": 3})
    assert out.scalars["code_exact"] == 1 and out.scalars["pixel_exact"] == 1
    exact = {(it["space"], it["rank"]): (it["index"], it["distance"]) for it in out.items}
    monkeypatch.setattr(X, "EXACT_MAX", 10)  # 30 images: now above the threshold
    [approx] = run(loaded, "neighbours", [{}], params={"dataset": "set", "query": 7, "k": 3})
    assert approx.scalars["code_exact"] == 0 and approx.scalars["pixel_exact"] == 0
    assert {(it["space"], it["rank"]): (it["index"], it["distance"]) for it in approx.items} == exact
    caches = store.data_dir() / ".cache"
    assert len(list((caches / "codes").glob("*.l2.faiss"))) == 1 and len(list((caches / "pixels").glob("*.faiss"))) == 1
