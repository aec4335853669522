"""The models directory: list, add, show, load and remove models; cache keys for a loaded-model cache.

``add`` writes into a ``.tmp-`` folder of the models directory, checks the result with
:func:`convlens.zoo.check.check` and renames it into place in one step: a refused model never
leaves a half-written folder and never touches the others.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from convlens.zoo.check import ModelCard, check, open_model
from convlens.zoo.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_WEIGHTS_BYTES,
    WEIGHT_SUFFIXES,
    ManifestError,
    check_name,
    models_dir,
    parse_source,
    read_classes_file,
    validate_classes,
)
from convlens.zoo.writer import dumps

Status = Literal["available", "unavailable"]
CLASSES_FILE = "classes.txt"
_MAX_KEY_FILES = 10_000  # files hashed by cache_key (stat only)
_MEMO: OrderedDict[str, ModelCard | str] = OrderedDict()  # cache_key -> card, or why the model is unavailable
_MEMO_SIZE = 256
_MEMO_LOCK = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One folder of the models directory; ``reason`` ("field: message") when it is unavailable."""

    name: str
    folder: Path
    status: Status
    reason: str | None = None
    card: ModelCard | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason,
                "card": None if self.card is None else self.card.to_json()}


def cache_key(folder: Path) -> str:
    """A key that changes whenever the model may have changed, cheap enough to compute on every request
    (tens of µs for a model folder: the server compares it before serving a cached model).

    SHA-256 of the folder's device, inode and mtime, ``model.toml``'s bytes, and the relative path, size, mtime (ns) and
    inode of every file in the folder (symlinked files followed). The weights are never read or hashed.
    """
    resolved = os.fspath(folder)
    try:
        st = os.stat(resolved)  # the folder a link points to: its device and inode, cheaper than realpath
        parts: list[object] = [(st.st_dev, st.st_ino, st.st_mtime_ns)]
    except OSError:
        parts = [resolved]
    try:
        with open(os.path.join(resolved, MANIFEST), "rb") as manifest:
            parts.append(manifest.read(MAX_MANIFEST_BYTES + 1))
    except OSError:
        parts.append(b"no manifest")
    pending = [(resolved, "")]
    while pending and len(parts) < _MAX_KEY_FILES:
        path, prefix = pending.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):  # a linked folder: its own stat only (no cycles)
                    pending.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
                st = entry.stat()
            except OSError:
                continue
            parts.append((prefix + entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    parts[2:] = sorted(parts[2:], key=lambda p: p[0])  # type: ignore[index]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _remember(key: str, value: ModelCard | str) -> None:
    with _MEMO_LOCK:
        _MEMO[key] = value
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)


def inspect(folder: Path, root: Path | None = None) -> Entry:
    """Check one folder (remembered by :func:`cache_key`, so listing again is cheap); never raises."""
    folder = Path(folder)
    root = models_dir() if root is None else root
    key = cache_key(folder)
    found = _MEMO.get(key)
    if found is None:
        try:
            found = check(folder, root=root)
        except ManifestError as exc:
            found = str(exc)
        except Exception as exc:  # noqa: BLE001 — a broken model never hides the others
            found = f"{type(exc).__name__}: {exc}"
        _remember(key, found)
    if isinstance(found, ModelCard):
        return Entry(folder.name, folder, "available", card=found)
    return Entry(folder.name, folder, "unavailable", reason=found)


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "builtin" / "models"  # read-only examples (digits)


def _folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if not p.name.startswith(".") and (p.is_dir() or p.is_symlink())]


def shipped_names() -> tuple[str, ...]:
    """Models that come with ConvLens (``convlens/builtin/models/``): listed first, never removed or replaced."""
    return _shipped(SHIPPED_DIR)


@functools.lru_cache(maxsize=4)
def _shipped(root: Path) -> tuple[str, ...]:  # part of the installed package: read once
    return tuple(p.name for p in _folders(root))


def list_models() -> list[Entry]:
    """The shipped models, then every folder of the models directory (dot-folders skipped), checked; broken
    ones are listed with the reason. A folder named like a shipped model is listed as unavailable."""
    root, shipped = models_dir(), shipped_names()
    entries = [inspect(p, SHIPPED_DIR) for p in _folders(SHIPPED_DIR)]
    for p in _folders(root):
        entries.append(Entry(p.name, p, "unavailable", reason=f"name: {p.name!r} is a model shipped with ConvLens")
                       if p.name in shipped else inspect(p, root))
    return entries


def locate(name: str) -> tuple[Path, Path]:
    """(folder, root) of the model called ``name``: shipped first, then the models directory."""
    check_name(name)
    if name in shipped_names():
        return SHIPPED_DIR / name, SHIPPED_DIR
    folder = models_dir() / name
    if not (folder.exists() or folder.is_symlink()):
        known = ", ".join(e.name for e in list_models())
        raise ManifestError("name", f"no model {name!r}; known: {known or 'none (add one first)'}")
    return folder, models_dir()


def _existing(name: str) -> Path:
    return locate(name)[0]


def load(name: str) -> tuple[nn.Module, ModelCard]:
    """The network (eval mode, frozen) and card of the model called ``name``."""
    folder, root = locate(name)
    return open_model(folder, root=root)


def show(name: str) -> tuple[str, ModelCard]:
    """The manifest's text and the checked card."""
    folder, root = locate(name)
    card = check(folder, root=root)
    return (folder / MANIFEST).read_text(encoding="utf-8"), card


def remove(name: str) -> None:
    """Delete a model folder (a symlinked folder: the link only)."""
    if name in shipped_names():
        raise ManifestError("name", f"{name!r} is shipped with ConvLens and cannot be removed")
    folder = _existing(name)
    trash = Path(tempfile.mkdtemp(prefix=".tmp-rm-", dir=models_dir()))
    os.replace(folder, trash / name)  # gone from the listing at once, then deleted
    shutil.rmtree(trash, ignore_errors=True)


def _input_file(path: object, field_name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise ManifestError(field_name, f"no file at {str(path)!r}")
    return Path(path)


def add(
    name: str,
    source: str,
    weights_path: Path | str,
    classes: Sequence[str] | Path,
    *,
    input_size: int | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
    description: str = "",
    key: str | None = None,
    strip_prefix: Sequence[str] = (),
    cam_layer: str | None = None,
    code_layer: str | None = None,
    code: Path | str | None = None,
    replace: bool = False,
) -> ModelCard:
    """Add a model: copy the weights, write ``classes.txt`` and ``model.toml``, check, rename into place.

    ``classes``: a list of names or a :class:`~pathlib.Path` to a file of one name a line. ``code``: the
    operator's Python file for a ``python:`` source, copied into the folder under the source's file name;
    a ``python:`` source without it is refused. Never pass ``code`` from an API request: it is executed.
    A name that exists is refused unless ``replace``. Raises :class:`ManifestError`; nothing is written then.
    """
    root = models_dir()
    final = _free_place(root, name, replace)
    arch = parse_source(source)
    if arch.kind == "python" and code is None:
        raise ManifestError("architecture.source", "python: sources are operator code: add them from the command "
                                                   "line with --code FILE (never over the API)")
    if code is not None and arch.kind != "python":
        raise ManifestError("architecture.source", f"a code file goes with a python: source, not {source!r}")
    code_file = None if code is None else _input_file(code, "architecture.source")
    weights = _weights_file(weights_path)
    if isinstance(classes, os.PathLike):
        names = read_classes_file(_input_file(classes, "classes.file"))
    else:
        names = validate_classes(list(classes) if isinstance(classes, (list, tuple)) else classes, "classes.names")
    weights_name = "weights" + weights.suffix.lower()
    pre = {"input_size": input_size, "resize_size": resize_size, "channels": channels,
           "mean": None if mean is None else list(mean), "std": None if std is None else list(std)}
    text = dumps({
        "name": name,
        "description": description,
        "architecture": {"source": source, **({"kwargs": dict(kwargs)} if kwargs else {})},
        "weights": {"file": weights_name, **({"key": key} if key is not None else {}),
                    **({"strip_prefix": list(strip_prefix)} if strip_prefix else {})},
        "classes": {"file": CLASSES_FILE},
        "preprocessing": {k: v for k, v in pre.items() if v is not None},
        "layers": {k: v for k, v in (("cam", cam_layer), ("code", code_layer)) if v is not None},
    })
    files = {weights_name: weights, **({arch.file: code_file} if code_file is not None and arch.file else {})}
    return _place(root, final, name, files, names, text, replace)


def _place(root: Path, final: Path, name: str, files: Mapping[str, Path], names: Sequence[str], manifest: str,
           replace: bool) -> ModelCard:
    """Write the folder under a temporary name (the ``files`` copied, the classes and the manifest written),
    check it, and rename it into place; nothing is left behind if anything fails."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for relative, source in files.items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / relative)
        (tmp / CLASSES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
        (tmp / MANIFEST).write_text(manifest, encoding="utf-8")
        card = check(tmp, name=name, root=root)
        _commit(tmp, final, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _free_place(root: Path, name: str, replace: bool) -> Path:
    """Where the model ``name`` goes: refused if it names a shipped model, or an existing one unless ``replace``."""
    check_name(name)
    from convlens.models import REGISTRY  # the built-in zoo (imports this package lazily too)

    if name in REGISTRY or name in shipped_names():
        raise ManifestError("name", f"{name!r} is the name of a model shipped with ConvLens; choose another")
    final = root / name
    if (final.exists() or final.is_symlink()) and not replace:
        raise ManifestError("name", f"a model named {name!r} already exists; remove it first or replace it")
    return final


def _weights_file(path: Path | str) -> Path:
    weights = _input_file(path, "weights.file")
    if weights.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ManifestError("weights.file", f"must end in {', '.join(WEIGHT_SUFFIXES)}, got {weights.name!r}")
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ManifestError("weights.file", f"{weights.name!r} is larger than {MAX_WEIGHTS_BYTES // 1024**3} GiB")
    return weights


def _commit(tmp: Path, final: Path, replace: bool) -> None:
    old: Path | None = None
    if replace and (final.exists() or final.is_symlink()):
        old = Path(tempfile.mkdtemp(prefix=".tmp-old-", dir=final.parent))
        os.replace(final, old / final.name)
    try:
        os.rename(tmp, final)  # atomic; fails if the name was taken meanwhile
    except OSError:
        if old is not None:
            os.replace(old / final.name, final)
            shutil.rmtree(old, ignore_errors=True)
        raise ManifestError("name", f"a model named {final.name!r} already exists") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
