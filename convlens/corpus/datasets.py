"""Datasets: named folders of images under one data directory, ImageFolder layout.

    $CONVLENS_DATA_DIR/            (default: <project>/data/datasets)
        shapes10k/                 a dataset
            circle/000000.png      label folder / image (every image is stored as an RGB PNG)
            .masks/circle/000000.png   optional object masks (the built-in generator writes them)
            .meta.json             where it came from, how many files were skipped
            .index.npz             its files, labels, sizes, times and fingerprint: opened without a scan
        .tmp-*/                    a dataset being written (renamed into place when complete)
        .cache/                    CNN codes, projections, top patches (see ``convlens.corpus.codes``)

Every source (a local folder, a zip, the built-in generator, the natural sample images of the
installed wheels) is written to a temporary folder first and renamed into place in one step, so a
failed or rejected import never leaves a half-written dataset and never touches existing ones.
Zips are checked entry by entry before anything is written (path escapes, symlinks, encryption, compression
method, entry count, total uncompressed size, compression ratio), read with a cap on the bytes actually inflated
(a header may lie), and any read error is a refusal naming ``params.archive``; non-images are skipped and
counted; every image mode (grey, CMYK, palette, 16-bit) is converted to RGB. The built-in generator renders
chunks of images in a pool of processes; the files do not depend on how many.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from convlens.images import ALLOWED_FORMATS, ImageDecodeError, decode_image
from convlens.schema import SchemaError

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "CONVLENS_DATA_DIR"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LABEL_PATTERN = re.compile(r"[^A-Za-z0-9_-]+")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
UNLABELLED = "unlabelled"
MASKS = ".masks"
META = ".meta.json"
INDEX = ".index.npz"  # files, targets, sizes, times and fingerprint of a dataset: opened without a scan
INDEX_VERSION = 1
SETTLE_NS = 50_000_000  # a folder time recorded in an index is at least this old (see _settled_mtime)

# Zip limits (an upload must stay under all of them).
MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3  # uncompressed
MAX_ZIP_ENTRY_BYTES = 20 * 1024**2  # one image
MAX_ZIP_RATIO = 100.0  # uncompressed / compressed, per entry and overall
MAX_BUILTIN = 1_000_000
# Built-in generation: chunks of images rendered by a pool of processes (one per core, at most
# $CONVLENS_DATASET_WORKERS) once a dataset is large enough to pay for starting them.
CHUNK = 100  # images: a cancel waits for the running chunks (a fraction of a second on an idle core)
PARALLEL_MIN = 2000
WORKERS_ENV = "CONVLENS_DATASET_WORKERS"
POLL_S = 0.25  # progress is reported (and a cancel noticed) at least this often while chunks render
BYTES_PER_IMAGE = 16 * 1024  # disk taken by a built-in image and its mask (~10 kB PNG + a 4 kB block), measured

Progress = Callable[[int, int], None]
TMP_PREFIX = ".tmp-"  # + the writing process's pid + "-": a dataset being written
TRASH_PREFIX = ".trash-"  # + pid + "-": a dataset being deleted
LEGACY_DEBRIS_AGE_S = 24 * 3600  # debris named before pids were in the name: swept once this old


class DatasetError(SchemaError):
    """A dataset operation refused: ``field`` names what was wrong (4xx in the API)."""


def data_dir() -> Path:
    """``$CONVLENS_DATA_DIR`` or ``<project>/data/datasets``; created on first use."""
    path = Path(os.environ.get(DATA_DIR_ENV) or ROOT / "data" / "datasets")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_name(name: object, field_name: str = "params.dataset") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DatasetError(field_name, f"must be 1-64 characters of a-z, 0-9, '_' or '-' (starting with a letter or "
                                       f"digit), got {name!r}")
    return name


def read_rgb(path: Path) -> Image.Image:
    """An image file as RGB, read whole (the file is closed on return)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB") if img.mode != "RGB" else img.copy()


@dataclass(frozen=True)
class Dataset:
    """A dataset. ``files[i]`` (relative POSIX path) has label ``classes[targets[i]]``.

    ``fingerprint`` changes whenever a file is added, removed, renamed or rewritten (it hashes every
    relative path with its size and modification time): cached codes are keyed by it. It is worked out on first
    use by ``digest``: a dataset opened from its index (:data:`INDEX`) has read nothing but the index and its
    folders' times, and stats every file only when its fingerprint is asked for (for a large dataset this
    process has checked before, on a background thread: :func:`_indexed_digest`).
    """

    name: str
    root: Path
    files: tuple[str, ...]
    targets: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    digest: Callable[[], str] = field(repr=False, compare=False)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        # not functools.cached_property: before Python 3.12 it holds one lock for every instance of the class, so
        # a check of a million files would hold up every other dataset's fingerprint in the process
        known = self.__dict__.get("_fingerprint")
        if known is None:
            known = self.digest()
            object.__setattr__(self, "_fingerprint", known)
        return str(known)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    def label(self, i: int) -> str:
        return self.classes[int(self.targets[i])]

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as RGB."""
        return read_rgb(self.path(i))

    def mask(self, i: int) -> np.ndarray | None:
        """The object mask (H, W) bool of image ``i``, if the dataset has masks."""
        path = self.root / MASKS / self.files[i]
        if not path.is_file():
            return None
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127

    def describe(self) -> dict[str, float | int | str]:
        counts = np.bincount(self.targets, minlength=len(self.classes)) if len(self) else np.zeros(0, int)
        return {"name": self.name, "images": len(self), "classes": len(self.classes),
                "fingerprint": self.fingerprint[:16], "labels": ",".join(self.classes[:50]),
                "source": str(self.meta.get("source", "")),
                "skipped": int(self.meta.get("skipped", 0) or 0),  # type: ignore[call-overload]
                "largest_class": int(counts.max()) if len(counts) else 0}


# ------------------------------------------------------------------------------- scanning and the index
#
# A full scan lists every label folder and stats every file. A dataset of a million images would pay that on every
# open, so each dataset folder keeps an index (written when the dataset is written, rewritten by the first open
# after a change): its files, targets and labels, every file's size and modification time, the fingerprint, and
# the modification time of each label folder. Opening trusts the index when the root still has the same
# entries and no label folder's time moved (adding, removing or renaming a file moves its folder's time); a file
# rewritten in place moves only its own time, which the fingerprint's check of every file sees.


@dataclass(frozen=True)
class _Listing:
    """A scan: files in order with labels, sizes and times; the root's entries that count (``label/`` for a
    folder); each label folder's time, taken before it was listed (None if it had not settled)."""

    files: list[str]
    labels: list[str]
    sizes: np.ndarray  # (N,) int64
    mtimes: np.ndarray  # (N,) int64, ns
    top: list[str]
    folders: dict[str, int | None]


def _settled_mtime(path: str) -> int | None:
    """The folder's modification time once it is :data:`SETTLE_NS` old (file-system clocks are coarse: a change
    in the same tick would not move it), waiting for that at most once; None if it is in the future or keeps
    moving (a folder being written)."""
    mtime = os.stat(path, follow_symlinks=False).st_mtime_ns
    age = time.time_ns() - mtime
    if 0 <= age < SETTLE_NS:
        time.sleep((SETTLE_NS - age) / 1e9)
        again = os.stat(path, follow_symlinks=False).st_mtime_ns
        return mtime if again == mtime else None
    return mtime if age >= 0 else None


def _walk(root: Path) -> _Listing:
    """Label subfolders (dot-folders ignored) and images directly in the root (``unlabelled``), in name order;
    symlinks are not followed."""
    files: list[str] = []
    labels: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    top: list[str] = []
    folders: dict[str, int | None] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            top.append(entry.name + "/")
            folders[entry.name] = _settled_mtime(entry.path)  # before listing: a later change moves it
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.is_file(follow_symlinks=False) and sub.name.lower().endswith(IMAGE_SUFFIXES):
                    st = sub.stat(follow_symlinks=False)
                    files.append(f"{entry.name}/{sub.name}")
                    labels.append(entry.name)
                    sizes.append(st.st_size)
                    mtimes.append(st.st_mtime_ns)
        elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(IMAGE_SUFFIXES):
            top.append(entry.name)
            st = entry.stat(follow_symlinks=False)
            files.append(entry.name)
            labels.append(UNLABELLED)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
    return _Listing(files, labels, np.asarray(sizes, dtype=np.int64), np.asarray(mtimes, dtype=np.int64), top,
                    folders)


def _top(root: Path) -> tuple[list[str], dict[str, int]]:
    """The root's entries that count, as :func:`_walk` names them, and each label folder's time."""
    top: list[str] = []
    folders: dict[str, int] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            top.append(entry.name + "/")
            folders[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
        elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(IMAGE_SUFFIXES):
            top.append(entry.name)
    return top, folders


def _digest(files: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray) -> str:
    """Every relative path with its size and modification time, in order."""
    text = "".join(f"{rel}\0{size}\0{mtime}\n" for rel, size, mtime in zip(files, sizes.tolist(), mtimes.tolist(),
                                                                           strict=True))
    return hashlib.sha256(text.encode()).hexdigest()


def _checked_digest(root: Path, files: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray, recorded: str) -> str:
    """The fingerprint of an indexed dataset: ``recorded`` if every file still has the size and time the index
    holds, else worked out from what they are now (a file gone counts as size and time -1)."""
    base = f"{root}{os.sep}"
    now_sizes: list[int] = []
    now_mtimes: list[int] = []
    for rel in files:
        try:
            st = os.lstat(base + rel)
        except OSError:
            now_sizes.append(-1)
            now_mtimes.append(-1)
            continue
        now_sizes.append(st.st_size)
        now_mtimes.append(st.st_mtime_ns)
    size_now, mtime_now = np.asarray(now_sizes, dtype=np.int64), np.asarray(now_mtimes, dtype=np.int64)
    if np.array_equal(size_now, sizes) and np.array_equal(mtime_now, mtimes):
        return recorded
    return _digest(files, size_now, mtime_now)


RECHECK_IN_BACKGROUND_MIN = 100_000  # files: from here on, checking every file costs seconds (1M: ≈ 4.7 s here)
_Identity = tuple[str, int, int, int]  # an index file's path, inode, size and time
_CHECKED: dict[_Identity, str] = {}  # an index file's identity → this process's last fingerprint
_RECHECKING: dict[_Identity, Future[str]] = {}  # checks under way
_CHECKED_LOCK = threading.Lock()


def _indexed_digest(root: Path, files: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray, recorded: str,
                    identity: _Identity) -> str:
    """:func:`_checked_digest`, at once for a large dataset this process has checked before: it answers the
    fingerprint that check found and checks again on a background thread, whose answer the next open gets
    (stale-while-revalidate: a file rewritten in place, which leaves its folder's time alone, is seen one open
    later; added, removed or renamed files change a folder's time and are seen at once, as is everything in a
    dataset under :data:`RECHECK_IN_BACKGROUND_MIN` files). A large dataset this process has not checked yet
    waits for a check, joining one under way (:func:`warm_fingerprints`) rather than starting a second.
    ``identity``: the index file's path, inode, size and time, so a rewritten index is checked afresh."""
    check = partial(_checked_digest, root, files, sizes, mtimes, recorded)
    if len(files) < RECHECK_IN_BACKGROUND_MIN:
        return check()
    with _CHECKED_LOCK:
        known = _CHECKED.get(identity)
        running = _RECHECKING.get(identity)
        mine = running is None
        if running is None:
            running = _RECHECKING[identity] = Future()
    if mine:
        run = partial(_run_check, running, identity, check)
        if known is None:
            run()
        else:
            threading.Thread(target=run, name=f"fingerprint-{root.name}", daemon=True).start()
    return known if known is not None else running.result()


def _run_check(future: Future[str], identity: _Identity, check: Callable[[], str]) -> None:
    """Run ``check``, remember its answer, hand it (or its error) to everyone waiting on ``future``."""
    try:
        digest = check()
        with _CHECKED_LOCK:
            _CHECKED[identity] = digest
        future.set_result(digest)
    except BaseException as exc:  # noqa: BLE001 — the waiters get it; nothing is remembered
        future.set_exception(exc)
    finally:
        with _CHECKED_LOCK:
            _RECHECKING.pop(identity, None)


def warm_fingerprints() -> threading.Thread:
    """Check every large indexed dataset (:data:`RECHECK_IN_BACKGROUND_MIN` files and up), one after another,
    on a daemon thread, so a server worker's first open of one does not pay the seconds of that check (an open
    while it runs waits for it instead of checking again). A worker calls it when it starts; the thread."""
    def run() -> None:
        for folder in _dataset_folders():
            try:
                ds = _from_index(folder, folder.name)
                if ds is not None and len(ds) >= RECHECK_IN_BACKGROUND_MIN:
                    ds.fingerprint  # noqa: B018 — the check, remembered for later opens
            except Exception:  # noqa: BLE001 — that dataset's first open checks it itself
                logger.exception("checking dataset %s in the background", folder.name)

    thread = threading.Thread(target=run, name="warm-fingerprints", daemon=True)
    thread.start()
    return thread


def _read_meta(root: Path) -> dict[str, object]:
    if (root / META).is_file():
        try:
            return dict(json.loads((root / META).read_text()))
        except (ValueError, TypeError, OSError):
            return {}
    return {}


def _write_index(root: Path, listing: _Listing, classes: Sequence[str], targets: np.ndarray,
                 fingerprint: str) -> bool:
    """Write :data:`INDEX` into ``root`` (atomically); False when the scan cannot be trusted later (a folder that
    had not settled, a file name that does not fit the format) or the folder is not writable."""
    if any(t is None for t in listing.folders.values()):
        return False
    try:
        blob = "\n".join(listing.files).encode()
    except UnicodeEncodeError:
        return False
    if blob.count(b"\n") != max(len(listing.files) - 1, 0):  # a name with a line break
        return False
    header = {"version": INDEX_VERSION, "top": listing.top, "folders": listing.folders, "classes": list(classes),
              "fingerprint": fingerprint}
    tmp = root / f"{INDEX}.{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                     files=np.frombuffer(blob, dtype=np.uint8), targets=targets.astype(np.int32),
                     sizes=listing.sizes, mtimes=listing.mtimes)
        os.replace(tmp, root / INDEX)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


INDEX_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def _from_index(root: Path, name: str) -> Dataset | None:
    """The dataset as its index has it, if the index is there, readable and still right (the same root entries,
    no label folder changed); None otherwise."""
    try:
        st = os.stat(root / INDEX)
        identity = (str(root / INDEX), st.st_ino, st.st_size, st.st_mtime_ns)
        with np.load(root / INDEX, allow_pickle=False) as stored:
            header = json.loads(stored["header"].tobytes())
            if not isinstance(header, dict) or header.get("version") != INDEX_VERSION:
                return None
            if (header["top"], header["folders"]) != _top(root):
                return None
            blob = stored["files"].tobytes().decode()
            targets = stored["targets"].astype(np.int64)
            sizes, mtimes = stored["sizes"], stored["mtimes"]
    except INDEX_READ_ERRORS:
        return None
    files = tuple(blob.split("\n")) if blob else ()
    if not len(files) == len(targets) == len(sizes) == len(mtimes):
        return None
    recorded = str(header["fingerprint"])
    return Dataset(name, root, files, targets, tuple(header["classes"]),
                   partial(_indexed_digest, root, files, sizes, mtimes, recorded, identity), _read_meta(root))


def scan(root: Path, name: str | None = None, index: bool = False) -> Dataset:
    """Read a dataset folder: label subfolders (dot-folders ignored); images directly in the root are
    ``unlabelled``. Symlinks are not followed. ``index``: also (re)write its index."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("params.dataset", f"no dataset {name or root.name!r} in {root.parent}")
    listing = _walk(root)
    classes = tuple(sorted(set(listing.labels)))
    position = {c: k for k, c in enumerate(classes)}
    targets = np.fromiter((position[label] for label in listing.labels), dtype=np.int64, count=len(listing.labels))
    fingerprint = _digest(listing.files, listing.sizes, listing.mtimes)
    if index:
        _write_index(root, listing, classes, targets, fingerprint)
    return Dataset(name or root.name, root, tuple(listing.files), targets, classes, partial(str, fingerprint),
                   _read_meta(root))


def _open(root: Path, name: str) -> Dataset:
    """From the index when it is still right, else a scan that rewrites it."""
    return _from_index(root, name) or scan(root, name, index=True)


def _dataset_folders() -> list[Path]:
    """The data directory's dataset folders (names on the allow-list), in name order."""
    return [p for p in sorted(data_dir().iterdir()) if p.is_dir() and NAME_PATTERN.fullmatch(p.name)]


def list_datasets() -> list[Dataset]:
    return [_open(p, p.name) for p in _dataset_folders()]


def open_dataset(name: str) -> Dataset:
    """The dataset called ``name``; a name outside the allow-list or not present → DatasetError."""
    check_name(name)
    root = data_dir() / name
    if not root.is_dir():
        known = ", ".join(p.name for p in _dataset_folders())
        raise DatasetError("params.dataset", f"no dataset {name!r}; known: {known or 'none (create one first)'}")
    return _open(root, name)


def remove_dataset(name: str) -> None:
    root = data_dir() / check_name(name)
    if not root.is_dir():
        raise DatasetError("params.dataset", f"no dataset {name!r}")
    trash = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{os.getpid()}-", dir=data_dir()))
    os.replace(root, trash / name)  # gone from the listing at once, then deleted
    shutil.rmtree(trash, ignore_errors=True)


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(now: float | None = None) -> list[str]:
    """Remove the ``.tmp-<pid>-…`` and ``.trash-<pid>-…`` folders whose writing process is gone (a worker
    killed mid-import); a folder of a live process (a concurrent worker's job) is kept. Returns the names
    removed."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(data_dir().iterdir()):
        if not path.is_dir() or path.is_symlink() or not path.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            continue
        owner = path.name.split("-", 2)[1] if path.name.count("-") >= 2 else ""
        if owner.isascii() and owner.isdigit():
            if _owner_alive(int(owner)):
                continue
        elif now - path.stat().st_mtime < LEGACY_DEBRIS_AGE_S:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


# ----------------------------------------------------------------------------------------- writing


class _Writer:
    """Writes a new dataset into a temporary folder; :meth:`commit` renames it into place."""

    def __init__(self, name: str, source: str) -> None:
        self.name = check_name(name, "params.name")
        self.target = data_dir() / name
        if self.target.exists():
            raise DatasetError("params.name", f"a dataset called {name!r} exists; remove it first or pick another name")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=data_dir()))
        self.source = source
        self.written = 0
        self.skipped = 0
        self.converted = 0
        self._names: set[str] = set()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None or self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, img: Image.Image, label: str, stem: str, mask: np.ndarray | None = None) -> None:
        label = LABEL_PATTERN.sub("_", label).strip("._-")[:64] or UNLABELLED
        stem = LABEL_PATTERN.sub("_", stem).strip("._-")[:100] or "image"
        rel = f"{label}/{stem}.png"
        k = 1
        while rel in self._names:
            rel = f"{label}/{stem}_{k}.png"
            k += 1
        self._names.add(rel)
        if img.mode != "RGB":
            self.converted += 1
        _save(self.tmp, rel, img, mask)
        self.written += 1

    def add_bytes(self, data: bytes, label: str, stem: str) -> bool:
        """Decode ``data`` as an image (any mode → RGB); a non-image is skipped and counted."""
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
                mode = probe.mode
            img = decode_image(data, max_bytes=MAX_ZIP_ENTRY_BYTES)
        except (ImageDecodeError, OSError, ValueError, SyntaxError):
            self.skipped += 1
            return False
        if mode != "RGB":
            self.converted += 1
        self.add(img, label, stem)
        return True

    def commit(self, extra: dict[str, object] | None = None) -> Dataset:
        if self.written == 0:
            raise DatasetError("params.archive" if self.source == "zip" else "path",
                               f"no images found ({self.skipped} files were not images)")
        meta = {"source": self.source, "images": self.written, "skipped": self.skipped, "converted": self.converted,
                **(extra or {})}
        (self.tmp / META).write_text(json.dumps(meta, indent=2))
        scan(self.tmp, index=True)  # the index travels with the folder: the first open reads it
        try:
            os.rename(self.tmp, self.target)  # atomic; fails if the name was taken meanwhile
        except OSError:
            raise DatasetError("params.name", f"a dataset called {self.name!r} exists") from None
        return _open(self.target, self.name)


def _save(folder: Path, rel: str, img: Image.Image, mask: np.ndarray | None) -> None:
    """``img`` as an RGB PNG at ``folder/rel``, and ``mask`` (bool) at ``folder/.masks/rel``. Never creates
    ``folder``: a worker that outlives its removal (a swept orphan) fails instead of leaving debris."""
    label = rel.rpartition("/")[0]
    (folder / label).mkdir(exist_ok=True)
    img.convert("RGB").save(folder / rel, format="PNG", compress_level=1)
    if mask is not None:
        (folder / MASKS).mkdir(exist_ok=True)
        (folder / MASKS / label).mkdir(exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / MASKS / rel, format="PNG")


def _labels_of(paths: Sequence[PurePosixPath]) -> list[str]:
    """ImageFolder labels: the first folder (below one common top folder, if every entry has one)."""
    parts = [p.parts for p in paths]
    if parts and all(len(p) >= 2 for p in parts) and len({p[0] for p in parts}) == 1 and any(len(p) > 2 for p in parts):
        parts = [p[1:] for p in parts]
    return [p[0] if len(p) >= 2 else UNLABELLED for p in parts]


@dataclass(frozen=True)
class ZipLimits:
    entries: int = MAX_ZIP_ENTRIES
    total_bytes: int = MAX_ZIP_TOTAL_BYTES
    entry_bytes: int = MAX_ZIP_ENTRY_BYTES
    ratio: float = MAX_ZIP_RATIO


def _check_readable(info: zipfile.ZipInfo) -> None:
    """Encrypted entries and methods other than stored and deflate are refused before anything is read."""
    if info.flag_bits & 0x1:
        raise DatasetError("params.archive", f"entry {info.filename!r} is encrypted; send an unencrypted zip")
    if info.compress_type not in ZIP_METHODS:
        raise DatasetError("params.archive", f"entry {info.filename!r} uses compression method {info.compress_type}; "
                                             f"accepted: {', '.join(ZIP_METHODS.values())}")


def check_zip(archive: zipfile.ZipFile, limits: ZipLimits = ZipLimits()) -> list[zipfile.ZipInfo]:
    """Every file entry of ``archive`` after the safety checks, or DatasetError naming the reason.

    Refused: absolute paths, drive letters, backslashes, ``..`` components, symlinks (Unix mode in the
    external attributes), encrypted entries, methods other than stored and deflate, more than
    ``limits.entries`` entries, more than ``limits.total_bytes`` uncompressed, an entry over
    ``limits.entry_bytes``, or a compression ratio above ``limits.ratio``.
    """
    infos = archive.infolist()
    if not infos:
        raise DatasetError("params.archive", "the zip is empty")
    if len(infos) > limits.entries:
        raise DatasetError("params.archive", f"the zip has {len(infos)} entries; the limit is {limits.entries}")
    total = compressed = 0
    files = []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if (name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name) or ".." in path.parts
                or "\0" in name):
            raise DatasetError("params.archive", f"entry {name!r} escapes the dataset folder (absolute path or '..')")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DatasetError("params.archive", f"entry {name!r} is a symbolic link; links are refused")
        if info.is_dir():
            continue
        _check_readable(info)
        if info.file_size > limits.entry_bytes:
            raise DatasetError("params.archive", f"entry {name!r} is {info.file_size} bytes uncompressed; the limit is "
                                          f"{limits.entry_bytes}")
        if info.file_size > limits.ratio * max(info.compress_size, 1) and info.file_size > 1024:
            ratio = info.file_size / max(info.compress_size, 1)
            raise DatasetError("params.archive", f"entry {name!r} expands {ratio:.0f}x; the limit is "
                                                 f"{limits.ratio:g}x (a zip bomb?)")
        total += info.file_size
        compressed += info.compress_size
        if total > limits.total_bytes:
            raise DatasetError("params.archive", f"the zip holds more than {limits.total_bytes} bytes uncompressed")
        files.append(info)
    if total > limits.ratio * max(compressed, 1) and total > 1024:
        raise DatasetError("params.archive", f"the zip expands {total / max(compressed, 1):.0f}x; the limit is "
                                      f"{limits.ratio:g}x (a zip bomb?)")
    return files


# What reading an archive can raise besides DatasetError: bad structure or CRC (BadZipFile), an encrypted entry
# (RuntimeError), an unsupported method (NotImplementedError), offsets outside the file (ValueError: negative
# seek), a truncated or corrupt deflate stream (EOFError, zlib.error, OSError).
ZIP_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, ValueError, OSError,
                   EOFError, zlib.error)
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
READ_CHUNK = 1 << 16


@contextmanager
def unreadable_zip_refused() -> Iterator[None]:
    """The one place a zip's read errors become a DatasetError naming ``params.archive``."""
    try:
        yield
    except DatasetError:
        raise
    except ZIP_READ_ERRORS as exc:
        raise DatasetError("params.archive", f"not a readable zip file ({type(exc).__name__}: {exc})") from None


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, inflating at most ``min(declared size, limit) + 1`` bytes in small reads whatever the
    header says; more → DatasetError. (The deflate reader inflates no more than it is asked for per read, which
    is why only stored and deflate entries are accepted: bzip2 and LZMA reads are unbounded.)"""
    cap = min(info.file_size, limit)
    chunks: list[bytes] = []
    total = 0
    with unreadable_zip_refused(), archive.open(info) as handle:
        while total <= cap:
            chunk = handle.read(min(READ_CHUNK, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > cap:
        raise DatasetError("params.archive", f"entry {info.filename!r} is larger than its header says or than the "
                                             f"limit of {limit} bytes")
    return b"".join(chunks)


def import_zip(name: str, source: bytes | Path, limits: ZipLimits = ZipLimits(),
               progress: Progress | None = None) -> Dataset:
    """A zip (bytes or a path) → dataset ``name``. Checked before anything is written; atomic."""
    check_name(name, "params.name")
    with unreadable_zip_refused():
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    with archive:
        entries = [i for i in check_zip(archive, limits)
                   if not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(i.filename).parts)]
        labels = _labels_of([PurePosixPath(i.filename) for i in entries])
        with _Writer(name, "zip") as writer:
            for k, (info, label) in enumerate(zip(entries, labels, strict=True)):
                data = read_entry(archive, info, limits.entry_bytes)
                writer.add_bytes(data, label, PurePosixPath(info.filename).stem)
                if progress is not None:
                    progress(k + 1, len(entries))
            return writer.commit({"ignored_hidden": len(archive.infolist()) - len(entries)})


def import_folder(name: str, folder: Path, progress: Progress | None = None) -> Dataset:
    """A local ImageFolder-style folder (subfolders = labels) → dataset ``name`` (images re-encoded as PNG)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError("path", f"{folder} is not a folder or a zip file")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    rel = [PurePosixPath(p.relative_to(folder).as_posix()) for p in found]
    labels = [r.parts[0] if len(r.parts) >= 2 else UNLABELLED for r in rel]
    with _Writer(name, f"folder {folder}") as writer:
        for k, (path, label) in enumerate(zip(found, labels, strict=True)):
            if path.is_symlink() or path.stat().st_size > MAX_ZIP_ENTRY_BYTES:
                writer.skipped += 1
            else:
                writer.add_bytes(path.read_bytes(), label, path.stem)
            if progress is not None:
                progress(k + 1, len(found))
        return writer.commit()


def add(name: str, source: Path, progress: Progress | None = None) -> Dataset:
    """``convlens dataset add``: a zip file or a folder."""
    source = Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        return import_zip(name, source, progress=progress)
    return import_folder(name, source, progress=progress)


def default_workers(n: int) -> int:
    """Processes that generate ``n`` built-in images: one per available core (at most ``$CONVLENS_DATASET_WORKERS``),
    or this process alone below :data:`PARALLEL_MIN` images (starting a worker takes seconds)."""
    if n < PARALLEL_MIN:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get(WORKERS_ENV, "").strip()
    if cap.isascii() and cap.isdigit() and int(cap) >= 1:
        cores = min(cores, int(cap))
    return max(1, cores)


def _render_chunk(folder: str, seed: int, start: int, stop: int) -> int:
    """Images ``start`` … ``stop - 1`` of stream ``seed`` (and their masks) into ``folder``; each file depends on
    its index and the seed only, so any split into chunks writes the same bytes. Runs in a worker process."""
    from convlens.builtin.dataset import CLASSES, render_sample

    root = Path(folder)
    for i in range(start, stop):
        s = render_sample(seed, i)
        label = LABEL_PATTERN.sub("_", CLASSES[s.label]).strip("._-")[:64] or UNLABELLED
        _save(root, f"{label}/{i:07d}.png", Image.fromarray(s.image), s.mask)
    return stop - start


def _render_in_pool(folder: Path, seed: int, n: int, workers: int, progress: Progress | None) -> None:
    """All ``n`` images in chunks over ``workers`` processes, at most two chunks each in flight. Progress is the
    number of images written (rising to ``n``), reported every :data:`POLL_S` at least; whatever it raises (a
    cancel) stops the pool: queued chunks are dropped and running ones (a fraction of a second each) finish
    before this returns, so nothing writes into ``folder`` afterwards."""
    import concurrent.futures as cf
    import multiprocessing

    chunks = ((start, min(start + CHUNK, n)) for start in range(0, n, CHUNK))
    # spawn, not fork: this may run in a thread of a server process whose other threads hold locks
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: set[cf.Future[int]] = set()
        done = 0
        while True:
            for start, stop in itertools.islice(chunks, 2 * workers - len(pending)):
                pending.add(pool.submit(_render_chunk, str(folder), seed, start, stop))
            if not pending:
                break
            finished, pending = cf.wait(pending, timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
            try:
                done += sum(f.result() for f in finished)
            except cf.process.BrokenProcessPool as exc:
                raise RuntimeError("a process generating images stopped (killed, out of memory, or a script that "
                                   "calls this without `if __name__ == '__main__':`; workers=1 renders in this "
                                   "process)") from exc
            if progress is not None:
                progress(done, n)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_room(n: int) -> None:
    free = shutil.disk_usage(data_dir()).free
    if n * BYTES_PER_IMAGE > free:
        raise DatasetError("params.n", f"{n:,} images need about {n * BYTES_PER_IMAGE / 1e9:.1f} GB of disk; "
                                       f"{free / 1e9:.1f} GB are free")


def builtin(name: str, n: int, seed: int = 2, progress: Progress | None = None, workers: int | None = None) -> Dataset:
    """``n`` images of the built-in generator (stream ``seed``; 0 and 1 are the model's training and held-out
    streams) with their labels and object masks, rendered by ``workers`` processes (default
    :func:`default_workers`); the files are the same whatever the number of workers."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BUILTIN:
        raise DatasetError("params.n", f"must be an integer in [1, {MAX_BUILTIN}], got {n!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DatasetError("workers", f"must be a positive integer, got {workers!r}")
    count = min(default_workers(n) if workers is None else workers, -(-n // CHUNK))
    check_name(name, "params.name")
    _check_room(n)
    with _Writer(name, "builtin") as writer:
        if count > 1:
            _render_in_pool(writer.tmp, seed, n, count, progress)
        else:
            for start in range(0, n, CHUNK):
                done = start + _render_chunk(str(writer.tmp), seed, start, min(start + CHUNK, n))
                if progress is not None:
                    progress(done, n)
        writer.written = n
        return writer.commit({"seed": seed})


def natural_sources() -> Iterable[tuple[str, np.ndarray]]:
    """(name, RGB uint8 array) of the sample photographs shipped in installed wheels (scikit-learn; also
    scikit-image when installed)."""
    try:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        for path, image in zip(bunch.filenames, bunch.images, strict=True):
            yield Path(path).stem, np.asarray(image)
    except ImportError:
        pass
    try:
        import skimage.data as sk

        for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "camera", "coins", "moon", "page", "text", "horse", "cat", "retina", "colorwheel"):
            loader = getattr(sk, name, None)
            if loader is None:
                continue
            try:
                arr = np.asarray(loader())
            except Exception:  # noqa: BLE001 — some need a download; skip those
                continue
            if arr.dtype == bool:
                arr = arr.astype(np.uint8) * 255
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            yield name, arr[..., :3].astype(np.uint8)
    except ImportError:
        pass


def natural(name: str, crops: int = 16, size: int = 128, seed: int = 0) -> Dataset:
    """A small natural-image set: each shipped photograph (its label) and ``crops`` random square crops of it."""
    rng = np.random.default_rng(seed)
    with _Writer(name, "natural") as writer:
        for label, arr in natural_sources():
            img = Image.fromarray(arr)
            writer.add(img, label, "full")
            h, w = arr.shape[:2]
            for k in range(crops):
                side = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
                top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                crop = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
                writer.add(crop, label, f"crop{k:02d}")
        return writer.commit({"seed": seed})
