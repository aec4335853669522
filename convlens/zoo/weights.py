"""A model folder's weights: read a plain state dict (never a pickled object), load it strictly.

``.safetensors`` files are read with ``safetensors.torch.load_file``; ``.pt``/``.pth`` files with
``torch.load(..., weights_only=True)``, which refuses every pickled object that is not a tensor or a plain
container. Every failure is a :class:`ManifestError` naming ``weights.*`` or the state-dict keys.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from convlens.zoo.manifest import MAX_WEIGHTS_BYTES, ManifestError, WeightsSpec

_SHOWN = 3  # keys quoted per kind of mismatch


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised by (resolved path, size, mtime): weights files are hashed once a process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        with path.open("rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]


def _brief(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:200]


def _quote(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN])
    return shown + (f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def _read(path: Path) -> object:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:  # noqa: BLE001 — SafetensorError and friends: one clear line
            raise ManifestError("weights.file", f"{path.name!r} is not a valid safetensors file (truncated, or "
                                                f"another format renamed?): {_brief(exc)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ManifestError("weights.file", f"{path.name!r} is not a plain state dict (pickled objects are "
                                            f"refused): save model.state_dict(), or better, a .safetensors file"
                            ) from None
    except Exception as exc:  # noqa: BLE001
        raise ManifestError("weights.file", f"{path.name!r} is not a readable PyTorch checkpoint: {_brief(exc)}"
                            ) from None


def read_state_dict(path: Path, spec: WeightsSpec) -> dict[str, Tensor]:
    """The state dict in ``path``: under ``spec.key`` when given, ``spec.strip_prefix`` removed from its keys."""
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ManifestError("weights.file", f"{path.name!r} is {size / 1024**3:.1f} GiB, more than the "
                                            f"{MAX_WEIGHTS_BYTES // 1024**3} GiB limit")
    obj = _read(path)
    if spec.key is not None:
        if not isinstance(obj, Mapping) or spec.key not in obj:
            keys = _quote([str(k) for k in obj]) if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
            raise ManifestError("weights.key", f"the checkpoint has no key {spec.key!r}; it holds {keys}")
        obj = obj[spec.key]
    if not isinstance(obj, Mapping):
        raise ManifestError("weights.file", f"{path.name!r} holds a {type(obj).__name__}, not a state dict "
                                            f"(a mapping of names to tensors)")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            nested = [str(k) for k, v in obj.items() if isinstance(v, Mapping)]
            hint = f"; the state dict may sit under weights.key = {nested[0]!r}" if nested else ""
            raise ManifestError("weights.key" if nested else "weights.file",
                                f"{path.name!r} is not a plain state dict: {key!r} holds a "
                                f"{type(value).__name__}, not a tensor{hint}")
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        new = key
        for prefix in spec.strip_prefix:
            if new.startswith(prefix):
                new = new[len(prefix):]
        if new in state:
            raise ManifestError("weights.strip_prefix", f"stripping makes two keys {new!r}")
        state[new] = value
    return state


def _shape(shape: torch.Size) -> str:
    return f"({', '.join(str(s) for s in shape)})"


def load_strict(net: nn.Module, state: Mapping[str, Tensor]) -> None:
    """``net.load_state_dict(state, strict=True)``; missing or unexpected keys and shape mismatches are
    reported by name (the first few of each)."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing key{'s' if len(missing) > 1 else ''} {_quote(missing)}")
    if unexpected:
        problems.append(f"unexpected key{'s' if len(unexpected) > 1 else ''} {_quote(unexpected)}")
    for key in wrong[:_SHOWN]:
        problems.append(f"key {key!r} has shape {_shape(state[key].shape)}, the architecture expects "
                        f"{_shape(expected[key].shape)}")
    if len(wrong) > _SHOWN:
        problems.append(f"{len(wrong) - _SHOWN} more keys have other shapes")
    if problems:
        prefix = unexpected[0].split(".", 1)[0] + "." if unexpected else ""
        if missing and prefix and {k.removeprefix(prefix) for k in unexpected} >= set(missing):
            problems.append(f'set weights.strip_prefix = ["{prefix}"]')
        raise ManifestError("weights", "; ".join(problems))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ManifestError("weights", f"the state dict does not load: {_brief(exc)}") from None
