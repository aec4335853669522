"""``model.toml``: the manifest of one model folder, parsed and validated (no torch here).

    $CONVLENS_MODELS_DIR/          (default: <data root>/models, beside <data root>/datasets)
        mynet/                     one model; the folder is named like the model
            model.toml             this manifest
            weights.safetensors    the state dict (.safetensors, or a .pt/.pth state dict)
            classes.txt            one class name a line (or ``names = [...]`` in the manifest)
            net.py                 ``python:`` sources only: operator-placed, trusted code
        .tmp-*/                    a model being added (renamed into place once it checks)

Every file the manifest names must resolve, after following symlinks, inside the model folder,
and the folder inside the models directory. ``python:`` code is trusted code placed by the operator;
it is never accepted over the API.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from convlens.schema import MODEL_NAME, SchemaError

MODELS_DIR_ENV = "CONVLENS_MODELS_DIR"
MANIFEST = "model.toml"
NAME_PATTERN = MODEL_NAME  # always fullmatch: "net\n" is refused
LAYER_PATTERN = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MAX_MANIFEST_BYTES = 64 * 1024
MAX_WEIGHTS_BYTES = 2 * 1024**3
MAX_CLASSES_FILE_BYTES = 32 * 1024**2
MAX_CLASSES = 100_000
MAX_CLASS_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MIN_INPUT_SIZE, MAX_INPUT_SIZE, MAX_RESIZE_SIZE = 8, 1024, 2048

SourceKind = Literal["torchvision", "timm", "python"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("torchvision", "timm", "python")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")

_TOP = ("name", "description", "architecture", "weights", "classes", "preprocessing", "layers")
_TABLES: dict[str, tuple[str, ...]] = {
    "architecture": ("source", "kwargs"),
    "weights": ("file", "key", "strip_prefix"),
    "classes": ("file", "names"),
    "preprocessing": ("input_size", "resize_size", "channels", "mean", "std"),
    "layers": ("cam", "code"),
}


class ManifestError(SchemaError):
    """A model folder or a model to add was refused. ``field`` names the manifest field (dotted, e.g.
    ``preprocessing.mean``), ``weights`` for the state dict's keys, or ``model.toml`` for the file itself."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(field_name, " ".join(message.split()))  # always one line


def models_dir() -> Path:
    """``$CONVLENS_MODELS_DIR`` or ``<data root>/models`` (the data root holds ``datasets/``); created on first use."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        path = Path(env)
    else:
        from convlens.corpus.datasets import data_dir

        path = data_dir().parent / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_name(name: object, field_name: str = "name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ManifestError(field_name, f"must be 1-64 characters of a-z, 0-9, '_' or '-' starting with a letter or "
                                        f"digit, got {name!r}")
    return name


@dataclass(frozen=True)
class Architecture:
    """``source`` as written; ``target``: the model name (torchvision, timm) or the builder (python)."""

    source: str
    kind: SourceKind
    target: str
    file: str | None = None  # python: the code file, relative to the folder
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsSpec:
    file: str
    key: str | None = None
    strip_prefix: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreprocessingSpec:
    """What the manifest says; None = not given (timm fills it from its config, else it is required)."""

    input_size: int | None = None
    resize_size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    architecture: Architecture
    weights: WeightsSpec
    classes: tuple[str, ...]
    preprocessing: PreprocessingSpec
    cam_layer: str | None = None
    code_layer: str | None = None
    classes_file: str | None = None


def parse_source(source: object, field_name: str = "architecture.source") -> Architecture:
    """``torchvision:NAME``, ``timm:NAME`` or ``python:FILE.py:BUILDER`` (no torch import)."""
    if not isinstance(source, str) or ":" not in source:
        raise ManifestError(field_name, f"must be 'torchvision:NAME', 'timm:NAME' or 'python:FILE.py:BUILDER', "
                                        f"got {source!r}")
    kind, _, rest = source.partition(":")
    if kind == "python":
        file, sep, builder = rest.rpartition(":")
        if not sep or not file.endswith(".py") or not IDENTIFIER.fullmatch(builder):
            raise ManifestError(field_name, f"a python source is 'python:FILE.py:BUILDER' (a class or function in "
                                            f"FILE.py), got {source!r}")
        return Architecture(source, "python", builder, relative_path(file, field_name))
    if kind not in ("torchvision", "timm"):
        raise ManifestError(field_name, f"unknown kind {kind!r} in {source!r}; use torchvision:, timm: or python:")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", rest):
        raise ManifestError(field_name, f"{rest!r} is not a {kind} model name")
    return Architecture(source, kind, rest)  # type: ignore[arg-type]


def relative_path(value: object, field_name: str) -> str:
    """A plain relative POSIX path: no absolute path, no '..', no backslash."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value:
        raise ManifestError(field_name, f"must be a file name relative to the model folder, got {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ManifestError(field_name, f"{value!r} must be a path inside the model folder (no absolute path, "
                                        f"no '..')")
    return value


def contained_file(folder: Path, rel: str, field_name: str) -> Path:
    """``folder / rel`` after following symlinks, refused unless it is a regular file inside ``folder``."""
    base = folder.resolve()
    path = (folder / relative_path(rel, field_name)).resolve()
    if not path.is_relative_to(base):
        raise ManifestError(field_name, f"{rel!r} resolves outside the model folder (a symlink pointing out?)")
    if not path.is_file():
        raise ManifestError(field_name, f"{rel!r} is not a file in the model folder")
    return path


def contained_folder(root: Path, folder: Path) -> Path:
    """The model folder, resolved, refused unless it sits directly inside the models directory."""
    resolved = folder.resolve()
    if resolved.parent != root.resolve():
        raise ManifestError("name", f"the folder {folder.name!r} resolves outside the models directory "
                                    f"(a symlink pointing out?)")
    if not resolved.is_dir():
        raise ManifestError("name", f"no model folder {folder.name!r} in {root}")
    return resolved


def validate_classes(values: object, field_name: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)):
        raise ManifestError(field_name, f"must be a list of class names, got {type(values).__name__}")
    if not 1 <= len(values) <= MAX_CLASSES:
        raise ManifestError(field_name, f"needs 1 to {MAX_CLASSES} classes, got {len(values)}")
    for k, value in enumerate(values):
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_CLASS_CHARS \
                or value != value.strip() or any(c in value for c in "\n\r\0"):
            raise ManifestError(field_name, f"class {k} must be a non-empty single-line string of at most "
                                            f"{MAX_CLASS_CHARS} characters without surrounding spaces, got "
                                            f"{str(value)[:40]!r}")
    return tuple(values)


def read_classes_file(path: Path, field_name: str = "classes.file") -> tuple[str, ...]:
    """One class a line; blank lines ignored, surrounding spaces stripped."""
    if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
        raise ManifestError(field_name, f"{path.name!r} is larger than {MAX_CLASSES_FILE_BYTES // 1024**2} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(field_name, f"{path.name!r} is not UTF-8 text") from None
    return validate_classes([line.strip() for line in text.splitlines() if line.strip()], field_name)


class _Table:
    """One TOML table: refuses unknown keys, reads typed values, names ``prefix.key`` in errors."""

    def __init__(self, data: object, prefix: str, known: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise ManifestError(prefix.rstrip("."), f"must be a table, got {type(data).__name__}")
        self.data, self.prefix = data, prefix
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ManifestError(prefix + unknown[0], f"unknown field; known: {', '.join(known)}")

    def f(self, key: str) -> str:
        return self.prefix + key

    def string(self, key: str, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ManifestError(self.f(key), "is required")
            return None
        if not isinstance(value, str) or not value:
            raise ManifestError(self.f(key), f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, low: int, high: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ManifestError(self.f(key), f"must be an integer from {low} to {high}, got {value!r}")
        return value

    def numbers(self, key: str, positive: bool = False) -> tuple[float, ...] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > 0 or not positive) for v in value):
            what = "positive" if positive else "finite"
            raise ManifestError(self.f(key), f"must be a list of {what} numbers, got {value!r}")
        return tuple(float(v) for v in value)


def parse_manifest(folder: Path, name: str | None = None) -> Manifest:
    """Read and validate ``folder/model.toml`` and the classes it names. ``name``: the model's name when it
    differs from the folder's (a model being added sits in a ``.tmp-`` folder)."""
    expected = check_name(name if name is not None else folder.name)
    doc = _read_toml(folder)
    top = _Table(doc, "", _TOP)
    actual = check_name(top.string("name", required=True))
    if actual != expected:
        raise ManifestError("name", f"{actual!r} differs from the folder's name {expected!r}")
    description = top.data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ManifestError("description", f"must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    for required in ("architecture", "weights", "classes"):
        if required not in doc:
            raise ManifestError(required, "the table is required")
    architecture, weights = _architecture(doc, folder), _weights(doc, folder)
    classes, classes_file = _classes(doc, folder)
    pre = _preprocessing(doc)
    cam, code = _layers(doc)
    return Manifest(actual, description, architecture, weights, classes, pre, cam, code, classes_file)


def _read_toml(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ManifestError(MANIFEST, f"not found in the folder {folder.name!r}")
    contained_file(folder, MANIFEST, MANIFEST)
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(MANIFEST, f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(MANIFEST, f"is not valid TOML: {exc}") from None


def _architecture(doc: dict[str, Any], folder: Path) -> Architecture:
    arch = _Table(doc["architecture"], "architecture.", _TABLES["architecture"])
    architecture = parse_source(arch.string("source", required=True))
    kwargs = arch.data.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ManifestError("architecture.kwargs", f"must be a table of keyword arguments, got {kwargs!r}")
    architecture = Architecture(architecture.source, architecture.kind, architecture.target, architecture.file,
                                dict(kwargs))
    if architecture.file is not None:
        contained_file(folder, architecture.file, "architecture.source")
    return architecture


def _weights(doc: dict[str, Any], folder: Path) -> WeightsSpec:
    w = _Table(doc["weights"], "weights.", _TABLES["weights"])
    weights_file = w.string("file", required=True) or ""
    if not weights_file.endswith(WEIGHT_SUFFIXES):
        raise ManifestError("weights.file", f"must end in {', '.join(WEIGHT_SUFFIXES)}, got {weights_file!r}")
    contained_file(folder, weights_file, "weights.file")
    key = w.string("key")
    if key is not None and weights_file.endswith(".safetensors"):
        raise ManifestError("weights.key", "applies to .pt/.pth checkpoints only (a .safetensors file is the "
                                           "state dict itself)")
    strip = w.data.get("strip_prefix", [])
    strip = [strip] if isinstance(strip, str) else strip
    if not isinstance(strip, list) or not all(isinstance(p, str) and p for p in strip):
        raise ManifestError("weights.strip_prefix", f"must be a list of non-empty strings, got {strip!r}")
    return WeightsSpec(weights_file, key, tuple(strip))


def _classes(doc: dict[str, Any], folder: Path) -> tuple[tuple[str, ...], str | None]:
    c = _Table(doc["classes"], "classes.", _TABLES["classes"])
    classes_file = c.string("file")
    if (classes_file is None) == ("names" not in c.data):
        raise ManifestError("classes", "give exactly one of 'file' (one class a line) or 'names' (a list)")
    if classes_file is not None:
        return read_classes_file(contained_file(folder, classes_file, "classes.file")), classes_file
    return validate_classes(c.data["names"], "classes.names"), None


def _preprocessing(doc: dict[str, Any]) -> PreprocessingSpec:
    p = _Table(doc.get("preprocessing", {}), "preprocessing.", _TABLES["preprocessing"])
    pre = PreprocessingSpec(
        input_size=p.integer("input_size", MIN_INPUT_SIZE, MAX_INPUT_SIZE),
        resize_size=p.integer("resize_size", MIN_INPUT_SIZE, MAX_RESIZE_SIZE),
        channels=p.integer("channels", 1, 3),
        mean=p.numbers("mean"),
        std=p.numbers("std", positive=True),
    )
    if pre.channels == 2:
        raise ManifestError("preprocessing.channels", "must be 1 or 3, got 2")
    return pre


def _layers(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    layers = _Table(doc.get("layers", {}), "layers.", _TABLES["layers"])
    cam, code = layers.string("cam"), layers.string("code")
    for key_name, layer in (("layers.cam", cam), ("layers.code", code)):
        if layer is not None and not LAYER_PATTERN.fullmatch(layer):
            raise ManifestError(key_name, f"must be a dotted module name such as 'layer4.1', got {layer!r}")
    return cam, code
