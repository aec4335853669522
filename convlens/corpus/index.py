"""Nearest neighbours over a cached code set (or pixel set): exact below a size threshold, an approximate
faiss index above it, the index built once per cached set and stored beside it.

:func:`nearest` answers queries against a database of ``N`` rows (``(N, D)``, typically the memory-mapped
``.npy`` of :func:`convlens.corpus.codes.dataset_codes` or :func:`~convlens.corpus.codes.dataset_pixels`):

- ``N ≤`` :data:`EXACT_MAX` (50,000 rows), or a database with no cache file behind it: exact search
  (:func:`convlens.corpus.search.knn`, chunked float64). At 50,000 rows one query costs about 50 ms in code
  space (128-d built-in codes) and about 1 s in pixel space (3,072-d), one thread on this machine (at
  100,000 codes ≈ 100 ms, at 1,000,000 ≈ 1 s: where the index takes over).
- ``EXACT_MAX < N ≤`` :data:`HNSW_MAX` (250,000 rows): **HNSW** (``M`` = 32, ``efConstruction`` = 80,
  ``efSearch`` = 256). No training, so it does not depend on the data being clustered: recall@10 ≥ 0.95 even
  on structureless Gaussian codes (the tests' 20,000 random codes); ≈ 1.3 ms a query at 100,000 codes
  with the re-ranking below, recall@10 0.996 there on clustered codes. Its build inserts every row into a
  graph (≈ 16 s for 100,000 128-d codes on one busy thread, growing as N log N) and its links cost 256
  bytes a row beside the vectors, which is why it stops at 250,000 rows.
- ``N >`` :data:`HNSW_MAX`: **IVF** with ``nlist`` = 2·√N lists (k-means, 10 iterations, on a sample of
  40 rows a list) and ``nprobe`` = :data:`IVF_NPROBE` (64) lists scanned a query (≈ 3 % of the rows at
  1,000,000). Its build is a k-means on the sample plus one assignment pass (≈ 10 s for 1,000,000 128-d codes
  on one thread), its overhead 8 bytes a row; a query costs ≈ 3 ms at 1,000,000 codes (p95 3.6 ms, recall@10
  0.9995 on clustered codes). Its recall depends on the data having structure (≈ 0.73 on the tests'
  structureless codes at this nprobe; CNN codes group by content): ``docs/benchmarks.md``, "Neighbour index".

Storage is exact wherever it can be: float codes are stored flat (float32, as cached); uint8 pixels in L2
are stored as faiss's ``QT_8bit_direct`` scalar quantiser, which holds the integers 0..255 losslessly (no
residual encoding), at the cache's own 1 byte a value. Cosine over pixels normalises the rows, which are no
longer integers: stored as trained 8-bit (lossy), so 4× the candidates are fetched.

Metric and answers are those of the exact search: ``l2`` is Euclidean distance, ``cosine`` is 1 - cosine
similarity (the index holds unit rows under L2, which ranks as cosine does). The index proposes candidates
(``k``, one more when a row is excluded); they are re-ranked by :func:`~convlens.corpus.search.knn` itself
on those rows, so every reported distance is the exact float64 distance and equal distances keep the lower
index first, as in exact search. An approximate answer can only miss a true neighbour, never misorder or
misreport the ones it returns. A query for which the index yields too few candidates is answered exactly.

The index file sits beside the database file, named by the same cache key: ``<key>.npy`` →
``<key>.<metric>.faiss`` plus ``<key>.<metric>.faiss.json``, which records what it was built from (rows,
dimension, dtype, the database file's size, modification time and SHA-256) and the index file's own size and
SHA-256. It is reused while that record matches (a changed modification time with unchanged content is only
re-stamped); rebuilt when the database changed (same key, new content), when either file is missing or
unreadable, or when the index file does not match its recorded checksum — so only a file this module wrote
and checked reaches ``faiss.read_index`` (faiss's own format, no pickle). Files are written under a
temporary name and renamed. A loaded index is kept in memory (the last :data:`KEEP_LOADED`), keyed by the
files' identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from convlens.corpus.search import Metric, knn

EXACT_MAX = 50_000
HNSW_MAX = 250_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
IVF_NPROBE = 64
IVF_TRAIN_PER_LIST = 40
KEEP_LOADED = 2
CHUNK_BYTES = 64 * 1024 * 1024
FORMAT = 1

logger = logging.getLogger(__name__)

Method = Literal["exact", "hnsw", "ivf"]

_builds = 0
_lock = threading.Lock()
_path_locks: dict[str, threading.Lock] = {}
_loaded: OrderedDict[str, tuple[tuple[object, ...], Any]] = OrderedDict()


@dataclass(frozen=True)
class Found:
    """Neighbours of each query: ``indices`` (Q, k') int64 and ``distances`` (Q, k') float32, nearest first,
    as :func:`convlens.corpus.search.knn` returns them; ``method``: how they were found."""

    indices: np.ndarray
    distances: np.ndarray
    method: Method

    @property
    def exact(self) -> bool:
        return self.method == "exact"


def builds() -> int:
    """How many indexes this process has built (the tests tell a reuse from a rebuild by it)."""
    return _builds


def forget() -> None:
    """Drop the indexes kept in memory: the next search reads (and checks) its file again."""
    with _lock:
        _loaded.clear()


def method_for(rows: int, exact_max: int = EXACT_MAX, hnsw_max: int = HNSW_MAX) -> Method:
    """Exact search, HNSW or IVF for a database of ``rows`` rows (see the module's docstring)."""
    return "exact" if rows <= exact_max else "hnsw" if rows <= hnsw_max else "ivf"


def index_path(source: Path, metric: Metric) -> Path:
    """The index file of the database cached at ``source`` (``<key>.npy`` → ``<key>.<metric>.faiss``)."""
    return source.with_name(f"{source.stem}.{metric}.faiss")


def backing_file(database: np.ndarray) -> Path | None:
    """The ``.npy`` file a memory-mapped database was loaded from, when the array is that whole file (not a
    slice of it); None for an array in memory."""
    name = getattr(database, "filename", None)
    if not isinstance(database, np.memmap) or not name:
        return None
    path = Path(str(name))
    if path.suffix != ".npy" or not path.is_file():
        return None
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError):
        return None
    return path if tuple(shape) == database.shape and dtype == database.dtype else None


def nearest(queries: np.ndarray, database: np.ndarray, k: int, metric: Metric = "l2",
            exclude: np.ndarray | None = None, source: Path | None = None,
            exact_max: int | None = None, hnsw_max: int | None = None) -> Found:
    """(Q, D) queries against the (N, D) ``database`` → the ``k`` nearest rows of each (see
    :func:`convlens.corpus.search.knn` for ``metric``, ``exclude`` and the answer). ``source``: the cache file
    the database was loaded from (default: the memory map's own file), beside which the index is kept; a
    database with no file behind it is searched exactly. ``exact_max``, ``hnsw_max``: the thresholds (default
    :data:`EXACT_MAX`, :data:`HNSW_MAX`)."""
    source = source if source is not None else backing_file(database)
    method = method_for(len(database), EXACT_MAX if exact_max is None else exact_max,
                        HNSW_MAX if hnsw_max is None else hnsw_max)
    if method == "exact" or source is None:
        idx, dist = knn(queries, database, k, metric, exclude=exclude)
        return Found(idx, dist, "exact")
    try:
        import faiss  # noqa: F401
    except ImportError:  # requirements.txt pins faiss-cpu; without it, slower but the same answers
        logger.warning("faiss is not installed: exact search over %d rows", len(database))
        idx, dist = knn(queries, database, k, metric, exclude=exclude)
        return Found(idx, dist, "exact")
    index, lossy = load_or_build(database, source, metric, method)
    return Found(*_search(index, queries, database, k, metric, exclude, lossy), method)


# ------------------------------------------------------------------------------------------------- search


def _as_rows(x: np.ndarray, metric: Metric) -> np.ndarray:
    rows = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.maximum(norms, 1e-12)
    return rows


def _search(index: Any, queries: np.ndarray, database: np.ndarray, k: int, metric: Metric,
            exclude: np.ndarray | None, lossy: bool) -> tuple[np.ndarray, np.ndarray]:
    n = len(database)
    want = min(k, n - (0 if exclude is None else 1))
    fetch = min(n, (4 * k if lossy else k) + (0 if exclude is None else 1))
    q = np.array(queries, dtype=np.float32, ndmin=2)
    _, candidates = index.search(_as_rows(q, metric), fetch)
    out_i = np.empty((len(q), want), dtype=np.int64)
    out_d = np.empty((len(q), want), dtype=np.float32)
    for row, found in enumerate(candidates):
        ex = -1 if exclude is None else int(exclude[row])
        rows = np.unique(found[(found >= 0) & (found != ex)])  # ascending: knn's ties keep the lower index
        if len(rows) >= want:
            sub_i, sub_d = knn(q[row:row + 1], database[rows], want, metric)
            out_i[row], out_d[row] = rows[sub_i[0]], sub_d[0]
        else:  # the index found too few: this query exactly
            full_i, full_d = knn(q[row:row + 1], database, k, metric,
                                 exclude=None if exclude is None else np.asarray(exclude[row:row + 1]))
            out_i[row], out_d[row] = full_i[0], full_d[0]
    return out_i, out_d


# ------------------------------------------------------------------------------------------------- the file


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _record_path(index_file: Path) -> Path:
    return index_file.with_name(index_file.name + ".json")


def _path_lock(path: Path) -> threading.Lock:
    with _lock:
        return _path_locks.setdefault(str(path), threading.Lock())


def _read_record(index_file: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(index_file).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _source_matches(record: dict[str, Any], source: Path, database: np.ndarray, metric: Metric, method: Method,
                    index_file: Path) -> bool:
    """The record describes an index of this database, as it is now, built by ``method``."""
    if (record.get("metric"), record.get("method"), record.get("rows"), record.get("dim"), record.get("dtype")) != \
            (metric, method, len(database), int(database.shape[1]), str(database.dtype)):
        return False
    size, mtime, _ = _stat(source)
    if [size, mtime] == record.get("source_stat"):
        return True
    if size != (record.get("source_stat") or [None])[0] or _sha256(source) != record.get("source_sha256"):
        return False
    record["source_stat"] = [size, mtime]  # same content, touched or copied: re-stamp, do not rebuild
    _write_atomic(_record_path(index_file), json.dumps(record).encode())
    return True


def load_or_build(database: np.ndarray, source: Path, metric: Metric, method: Method) -> tuple[Any, bool]:
    """The faiss index of ``database`` (cached at ``source``) for ``metric`` by ``method``: from memory, from
    its file when that is this database's and intact, else built and written. → (index, lossy storage)."""
    import faiss

    index_file = index_path(source, metric)
    with _path_lock(index_file):
        record = _read_record(index_file)
        usable = record is not None and index_file.is_file() and \
            _source_matches(record, source, database, metric, method, index_file)
        if usable and record is not None:
            identity = (*_stat(index_file), *_stat(source))
            with _lock:
                kept = _loaded.get(str(index_file))
                if kept is not None:
                    _loaded.move_to_end(str(index_file))
            if kept is not None and kept[0] == identity:
                return kept[1], bool(record.get("lossy"))
            index = _read_checked(index_file, record, len(database), int(database.shape[1]))
            if index is not None:
                _keep(index_file, identity, index)
                return index, bool(record.get("lossy"))
        index, lossy, params = _build(database, metric, method)
        _write_index(faiss, index, index_file, {
            "format": FORMAT, "metric": metric, "method": method, "rows": len(database),
            "dim": int(database.shape[1]), "dtype": str(database.dtype), "lossy": lossy, "params": params,
            "source": source.name, "source_stat": list(_stat(source)[:2]), "source_sha256": _sha256(source),
            "faiss": faiss.__version__})
        _keep(index_file, (*_stat(index_file), *_stat(source)), index)
        return index, lossy


def _read_checked(index_file: Path, record: dict[str, Any], rows: int, dim: int) -> Any | None:
    """The index in ``index_file`` if its size and SHA-256 are the recorded ones and it holds ``rows`` rows
    of ``dim`` values; None (→ rebuild) otherwise."""
    import faiss

    try:
        if index_file.stat().st_size != record.get("index_bytes") or _sha256(index_file) != record.get("index_sha256"):
            return None
        index = faiss.read_index(str(index_file))
    except (OSError, RuntimeError, ValueError):
        return None
    if index.ntotal != rows or index.d != dim:
        return None
    _set_search_params(index, record.get("params") or {})
    return index


def _keep(index_file: Path, identity: tuple[object, ...], index: Any) -> None:
    with _lock:
        _loaded[str(index_file)] = (identity, index)
        _loaded.move_to_end(str(index_file))
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_index(faiss: Any, index: Any, index_file: Path, record: dict[str, Any]) -> None:
    tmp = index_file.with_name(f".{index_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        record.update(index_bytes=tmp.stat().st_size, index_sha256=_sha256(tmp))
        _record_path(index_file).unlink(missing_ok=True)  # never a new index beside an old record
        os.replace(tmp, index_file)
        _write_atomic(_record_path(index_file), json.dumps(record).encode())
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------------------- building


def _set_search_params(index: Any, params: dict[str, Any]) -> None:
    import faiss

    if "ef_search" in params:
        hnsw: Any = faiss.downcast_index(index)
        hnsw.hnsw.efSearch = int(params["ef_search"])
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])


def _chunks(database: np.ndarray, metric: Metric) -> Any:
    rows = max(1, CHUNK_BYTES // (4 * max(1, database.shape[1])))
    for start in range(0, len(database), rows):
        yield _as_rows(np.asarray(database[start:start + rows]), metric)


def _build(database: np.ndarray, metric: Metric, method: Method) -> tuple[Any, bool, dict[str, Any]]:
    """A new index of ``database`` → (index, lossy storage, its search parameters)."""
    import faiss

    global _builds
    n, d = len(database), int(database.shape[1])
    pixels = database.dtype == np.uint8
    qtype: Any = None if not pixels else faiss.ScalarQuantizer.QT_8bit_direct if metric == "l2" \
        else faiss.ScalarQuantizer.QT_8bit
    lossy = qtype == faiss.ScalarQuantizer.QT_8bit if pixels else False
    params: dict[str, Any]
    index: Any
    rng = np.random.default_rng(0)
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M) if qtype is None else faiss.IndexHNSWSQ(d, qtype, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
        if not index.is_trained:
            sample = np.sort(rng.choice(n, min(n, 65_536), replace=False))
            index.train(_as_rows(np.asarray(database[sample]), metric))
    else:
        nlist = max(1, min(n // IVF_TRAIN_PER_LIST, round(2 * math.sqrt(n))))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2) if qtype is None else \
            faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtype, faiss.METRIC_L2, False)
        index.cp.niter = 10
        index.cp.seed = 0
        sample = np.sort(rng.choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), replace=False))
        index.train(_as_rows(np.asarray(database[sample]), metric))
        params = {"nlist": nlist, "nprobe": min(nlist, IVF_NPROBE), "train_rows": len(sample), "kmeans_iterations": 10}
    for rows in _chunks(database, metric):
        index.add(rows)
    _set_search_params(index, params)
    _builds += 1
    return index, lossy, params
