"""The api container's entrypoint and health check, without a container."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


entrypoint = load(ROOT / "deploy" / "api" / "entrypoint.py", "convlens_entrypoint")
healthcheck = load(ROOT / "deploy" / "healthcheck.py", "convlens_healthcheck")


def test_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_WORKERS", "2")
    monkeypatch.setenv("CONVLENS_WORKERS_SALIENCY", "4")
    assert entrypoint.workers_config(["classify", "saliency"]) == {
        "classify": {"minWorkers": 2, "maxWorkers": 2}, "saliency": {"minWorkers": 4, "maxWorkers": 4}}
    monkeypatch.setenv("CONVLENS_WORKERS", "0")
    with pytest.raises(SystemExit, match=r"\[1, 64\]"):
        entrypoint.workers_config(["classify"])
    monkeypatch.setenv("CONVLENS_WORKERS", "many")
    with pytest.raises(SystemExit, match="whole number"):
        entrypoint.workers_config(["classify"])


def test_only_the_inference_key_is_shared(tmp_path: Path) -> None:
    path = entrypoint.share_key("abc123", tmp_path / "key")
    assert json.loads(path.read_text()) == {"inference": {"key": "abc123"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["key_file.json"]  # no temp file left


def test_api_health_check_needs_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_KEY_DIR", str(tmp_path))
    assert "no inference key" in (healthcheck.check_api() or "")
    assert healthcheck.main(["nonsense"]) == 2
