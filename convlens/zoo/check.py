"""Open a model folder: manifest → architecture → strict weights → one probe pass → a :class:`ModelCard`.

The probe pass on zeros of shape (1, channels, input_size, input_size) computes the layer catalogue and
gives the logits at once (the catalogue is never computed twice). The network comes back in eval mode
with its parameters frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convlens.receptive_field import LayerInfo, default_cam_layer, default_code_layer, layer_catalogue
from convlens.zoo.architecture import build, data_defaults
from convlens.zoo.manifest import (
    Manifest,
    ManifestError,
    PreprocessingSpec,
    SourceKind,
    check_name,
    contained_file,
    contained_folder,
    models_dir,
    parse_manifest,
)
from convlens.zoo.weights import load_strict, read_state_dict, sha256_file


@dataclass(frozen=True)
class ModelCard:
    """What a checked model is. ``layers``: its catalogue (from the probe pass), for the server to reuse."""

    name: str
    description: str
    source: str
    kind: SourceKind
    classes: tuple[str, ...]
    input_size: int
    resize_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    parameters: int
    weights_file: str
    weights_sha256: str
    layer_count: int
    cam_layer: str
    code_layer: str
    layers: tuple[LayerInfo, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items() if k != "layers"}


@dataclass(frozen=True)
class _Input:
    input_size: int
    resize_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _resolve(m: Manifest, defaults: PreprocessingSpec) -> _Input:
    given = m.preprocessing
    why = "timm's config does not give it for this model" if m.architecture.kind == "timm" else \
        "torchvision: and python: architectures need the [preprocessing] table"

    def pick(name: str) -> Any:
        value = getattr(given, name)
        return getattr(defaults, name) if value is None else value

    size = pick("input_size")
    if size is None:
        raise ManifestError("preprocessing.input_size", f"is required: {why}")
    resize = given.resize_size or (defaults.resize_size if given.input_size is None else None) or size
    if resize < size:
        raise ManifestError("preprocessing.resize_size", f"is {resize}, smaller than input_size {size}")
    channels = pick("channels") or 3
    if channels not in (1, 3):
        raise ManifestError("preprocessing.channels", f"must be 1 or 3, got {channels}")
    if m.architecture.kind == "timm" and defaults.mean is None:
        why = f"timm's config has no statistics for {channels} channel(s)"
    stats: dict[str, tuple[float, ...]] = {}
    for name in ("mean", "std"):
        value = pick(name)
        if value is None:
            raise ManifestError(f"preprocessing.{name}", f"is required: {why}")
        if len(value) != channels:
            raise ManifestError(f"preprocessing.{name}", f"has {len(value)} values for {channels} channel(s)")
        stats[name] = tuple(value)
    return _Input(size, resize, channels, stats["mean"], stats["std"])


def _probe(net: nn.Module, spec: _Input) -> tuple[Any, list[LayerInfo]]:
    """The layer catalogue, and the output of the same pass (a forward hook on the root module)."""
    outputs: list[Any] = []
    handle = net.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    shape = f"(1, {spec.channels}, {spec.input_size}, {spec.input_size})"
    try:
        catalogue = layer_catalogue(net, spec.input_size, in_channels=spec.channels)
    except Exception as exc:  # noqa: BLE001 — the model's own forward failed: report it in one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ManifestError("preprocessing", f"a forward pass on zeros of shape {shape} failed "
                                             f"({type(exc).__name__}: {first}); check input_size and channels"
                            ) from None
    finally:
        handle.remove()
    return (outputs[-1] if outputs else None), catalogue


def _layer(net: nn.Module, catalogue: list[LayerInfo], given: str | None, field_name: str,
           default: Callable[[nn.Module, list[LayerInfo]], str]) -> str:
    if given is None:
        try:
            return default(net, catalogue)
        except ValueError as exc:
            raise ManifestError(field_name, f"{exc}; name a layer in the [layers] table") from None
    try:
        net.get_submodule(given)
    except AttributeError:
        raise ManifestError(field_name, f"the model has no module {given!r}") from None
    row = next((r for r in catalogue if r.name == given), None)
    if row is None:
        raise ManifestError(field_name, f"module {given!r} is not reached by the forward pass")
    if field_name == "layers.cam" and not row.is_spatial:
        raise ManifestError(field_name, f"module {given!r} gives shape {row.output_shape}, not a spatial map")
    return given


def open_model(folder: Path, *, name: str | None = None, root: Path | None = None) -> tuple[nn.Module, ModelCard]:
    """Check the model folder and return its network (eval mode, frozen, on the CPU) and card.

    ``name``: the model's name when the folder's differs (a ``.tmp-`` folder being added); ``root``: the
    models directory the folder must sit in (default :func:`models_dir`). Raises :class:`ManifestError`.
    """
    folder = Path(folder)
    root = models_dir() if root is None else Path(root)
    name = check_name(folder.name if name is None else name)
    resolved = contained_folder(root, folder)
    m = parse_manifest(resolved, name)
    weights = contained_file(resolved, m.weights.file, "weights.file")
    _fits_its_weights(m, resolved, weights)
    net = build(m.architecture, resolved)
    spec = _resolve(m, data_defaults(m.architecture, net))
    sha = sha256_file(weights)
    load_strict(net, read_state_dict(weights, m.weights))
    net.eval().requires_grad_(False)
    logits, catalogue = _probe(net, spec)
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        what = f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise ManifestError("architecture.source", f"the forward pass gives {what}, not logits of shape "
                                                   f"(1, classes)")
    if logits.shape[1] != len(m.classes):
        raise ManifestError("classes", f"{len(m.classes)} classes but the model gives {logits.shape[1]} logits")
    card = ModelCard(
        name=m.name, description=m.description, source=m.architecture.source, kind=m.architecture.kind,
        classes=m.classes, input_size=spec.input_size, resize_size=spec.resize_size, channels=spec.channels,
        mean=spec.mean, std=spec.std, parameters=sum(p.numel() for p in net.parameters()),
        weights_file=m.weights.file, weights_sha256=sha, layer_count=len(catalogue),
        cam_layer=_layer(net, catalogue, m.cam_layer, "layers.cam", default_cam_layer),
        code_layer=_layer(net, catalogue, m.code_layer, "layers.code", default_code_layer),
        layers=tuple(catalogue),
    )
    return net, card


def _fits_its_weights(m: Manifest, folder: Path, weights: Path) -> None:
    """A torchvision/timm architecture is built on the ``meta`` device first (shapes only, no memory): one whose
    tensors need more than twice the weights file's bytes cannot match it, and is refused before it allocates
    (a client must not make a worker build a huge network with a small upload). ``python:`` code is the
    operator's and runs once."""
    if m.architecture.kind == "python":
        return
    with torch.device("meta"):
        probe = build(m.architecture, folder)
    needed = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    size = weights.stat().st_size
    if needed > 2 * size + 2**20:
        raise ManifestError("architecture.source", f"{m.architecture.source} holds {needed / 2**20:.1f} MiB of "
                                                   f"weights but {weights.name!r} only {size / 2**20:.1f} MiB: "
                                                   "they cannot match")


def check(folder: Path, *, name: str | None = None, root: Path | None = None) -> ModelCard:
    """:func:`open_model`'s card alone."""
    return open_model(folder, name=name, root=root)[1]

