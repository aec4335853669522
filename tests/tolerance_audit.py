"""A pytest plugin that reports how close every float comparison came to its tolerance.

    python -m pytest -p tests.tolerance_audit tests/core        # writes out/tolerance-audit.tsv

Wraps ``torch.allclose``, ``torch.testing.assert_close`` and ``numpy.allclose`` and records, per test and
call site, the largest ratio |a − b| / (atol + rtol·|b|) seen (1.0 = exactly at the tolerance). Run it
under each CPU profile (``python -m tests.kernels``) to see which comparisons sit near their limit.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

_worst: dict[tuple[str, str], float] = {}
_current = {"test": ""}


def _ratio(actual: Any, expected: Any, rtol: float, atol: float) -> float:
    a = torch.as_tensor(np.asarray(actual) if not isinstance(actual, torch.Tensor) else actual).detach().double()
    b = torch.as_tensor(np.asarray(expected) if not isinstance(expected, torch.Tensor) else expected)
    b = b.detach().double().to(a.device).expand_as(a) if b.numel() == 1 else b.detach().double()
    if a.shape != b.shape or a.numel() == 0 or not torch.isfinite(a).all() or not torch.isfinite(b).all():
        return 0.0
    limit = atol + rtol * b.abs()
    diff = (a - b).abs()
    return float((diff / limit.clamp_min(1e-300)).max()) if bool((limit > 0).all()) else float("inf") * bool(
        (diff > 0).any())


def _site() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/tests/" in frame.filename and not frame.filename.endswith("tolerance_audit.py"):
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return "?"


def _record(actual: Any, expected: Any, rtol: float, atol: float) -> None:
    try:
        ratio = _ratio(actual, expected, rtol, atol)
    except (TypeError, ValueError, RuntimeError):
        return
    key = (_current["test"], _site())
    _worst[key] = max(_worst.get(key, 0.0), ratio)


def _wrap(original: Callable[..., Any], defaults: Callable[[Any, Any], tuple[float, float]]) -> Callable[..., Any]:
    def wrapped(actual: Any, expected: Any, *args: Any, **kwargs: Any) -> Any:
        rtol = kwargs.get("rtol", args[0] if args else None)
        atol = kwargs.get("atol", args[1] if len(args) > 1 else None)
        if rtol is None or atol is None:
            d_rtol, d_atol = defaults(actual, expected)
            rtol, atol = (d_rtol if rtol is None else rtol), (d_atol if atol is None else atol)
        _record(actual, expected, float(rtol), float(atol))
        return original(actual, expected, *args, **kwargs)

    return wrapped


def _assert_close_defaults(actual: Any, _expected: Any) -> tuple[float, float]:
    dtype = actual.dtype if isinstance(actual, torch.Tensor) else torch.float32
    return {torch.float64: (1e-7, 1e-7), torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5)}.get(
        dtype, (1.3e-6, 1e-5))


@pytest.fixture(autouse=True)
def _audit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _current["test"] = request.node.nodeid
    monkeypatch.setattr(torch, "allclose", _wrap(torch.allclose, lambda a, b: (1e-5, 1e-8)))
    monkeypatch.setattr(torch.testing, "assert_close", _wrap(torch.testing.assert_close, _assert_close_defaults))
    monkeypatch.setattr(np, "allclose", _wrap(np.allclose, lambda a, b: (1e-5, 1e-8)))
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = Path(os.environ.get("CONVLENS_TOLERANCE_AUDIT", "out/tolerance-audit.tsv"))
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(_worst.items(), key=lambda kv: -kv[1])
    out.write_text("ratio\tsite\ttest\n" + "".join(f"{r:.3g}\t{site}\t{test}\n" for (test, site), r in rows))
