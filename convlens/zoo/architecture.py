"""Build a manifest's architecture with random initial weights; nothing is ever downloaded.

``python:FILE.py:BUILDER`` executes FILE.py: it is trusted code placed in the model folder by the
operator (``convlens model add --code``), never accepted over the API.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

from torch import nn

from convlens.zoo.manifest import Architecture, ManifestError, PreprocessingSpec, contained_file

# Keyword arguments that would fetch or replace weights: the manifest's weights table is the only source.
_REFUSED_KWARGS = {
    "torchvision": ("weights", "weights_backbone", "pretrained", "progress"),
    "timm": ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"),
    "python": (),
}


def _unknown(kind: str, name: str, known: list[str]) -> ManifestError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ManifestError("architecture.source", f"{kind} has no classification model {name!r}{hint}")


def _python_module(path: Path) -> ModuleType:
    """Import the operator's file once per content (a changed file is a new module)."""
    data = path.read_bytes()
    module_name = "convlens_zoo_code_" + hashlib.sha256(str(path).encode() + b"\0" + data).hexdigest()[:16]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ManifestError("architecture.source", f"{path.name!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]
        if not isinstance(exc, Exception):
            raise
        raise ManifestError("architecture.source", f"importing {path.name!r} failed: {type(exc).__name__}: {exc}"
                            ) from None
    return module


def build(arch: Architecture, folder: Path) -> nn.Module:
    """The architecture with its initial (random) weights, built with ``arch.kwargs``."""
    for key in _REFUSED_KWARGS[arch.kind]:
        if key in arch.kwargs:
            raise ManifestError(f"architecture.kwargs.{key}", "is not allowed: the weights come from the weights "
                                                              "table and nothing is downloaded")
    kwargs = dict(arch.kwargs)
    builder: Callable[[], object]
    if arch.kind == "torchvision":
        from torchvision import models as tvm

        known = tvm.list_models(module=tvm)
        if arch.target not in known:
            raise _unknown("torchvision", arch.target, known)
        builder = partial(tvm.get_model, arch.target, weights=None, **kwargs)
    elif arch.kind == "timm":
        import timm

        if not timm.is_model(arch.target):
            raise _unknown("timm", arch.target, timm.list_models())
        builder = partial(timm.create_model, arch.target, pretrained=False, **kwargs)
    else:
        assert arch.file is not None
        module = _python_module(contained_file(folder, arch.file, "architecture.source"))
        factory = getattr(module, arch.target, None)
        if not callable(factory):
            raise ManifestError("architecture.source", f"{arch.file!r} defines no class or function {arch.target!r}")
        builder = partial(factory, **kwargs)
    try:
        net = builder()
    except TypeError as exc:
        raise ManifestError("architecture.kwargs", f"{arch.source} refused them: {exc}") from None
    except Exception as exc:  # noqa: BLE001 — any builder failure is one clear line, not a traceback
        raise ManifestError("architecture.source", f"building {arch.source} failed: {type(exc).__name__}: {exc}"
                            ) from None
    if not isinstance(net, nn.Module):
        raise ManifestError("architecture.source", f"{arch.source} returned a {type(net).__name__}, not an "
                                                   f"nn.Module")
    return net


def data_defaults(arch: Architecture, net: nn.Module) -> PreprocessingSpec:
    """timm: input size, resize (input / crop_pct), mean and std from timm's data config; others: nothing."""
    if arch.kind != "timm":
        return PreprocessingSpec()
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=net)
    _, height, width = cfg["input_size"]
    size = int(height) if height == width else None
    crop = float(cfg.get("crop_pct") or 1.0)
    channels = arch.kwargs.get("in_chans", int(cfg["input_size"][0]))
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    fits = len(mean) == channels
    return PreprocessingSpec(
        input_size=size,
        resize_size=None if size is None else max(size, math.floor(size / crop)),
        channels=channels if isinstance(channels, int) else None,
        mean=mean if fits else None,
        std=std if fits else None,
    )
