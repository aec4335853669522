"""Build the TorchServe model archives (``.mar``) of the ConvLens endpoints.

    python -m serve.archives [--out DIR] [--force]

One archive per endpoint of :func:`convlens.registry.all_endpoints` (the registry decides; nothing
here lists endpoints). Each holds its family's handler (``handlers/<family>.py``) and its model-config YAML
(``serve/model-config/<endpoint>.yaml`` if there is one, else ``<family>.yaml``) — no serialized model: the
handler loads the
backbones through ``convlens.models.load_model`` and imports ``handlers.base`` and
``convlens`` from the installed project (``serve/server.py`` also puts the repository on
the workers' ``PYTHONPATH``). An archive is rebuilt when it is missing, when a handler,
core or model-config source is newer than it, or when its model config changed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
HANDLERS_DIR = ROOT / "handlers"
MODEL_CONFIG_DIR = ROOT / "serve" / "model-config"
VERSION = "1.0"


@cache
def all_endpoints() -> tuple[str, ...]:
    """Every endpoint the server offers (imports the core, hence torch: called only when building)."""
    from convlens import registry

    return registry.all_endpoints()


def handler_name(endpoint: str) -> str:
    """The handler module of an endpoint: its own file if there is one, else its family's."""
    if (HANDLERS_DIR / f"{endpoint}.py").is_file():
        return endpoint
    from convlens import registry

    return registry.endpoint_family(endpoint)


def config_source(endpoint: str) -> Path:
    own = MODEL_CONFIG_DIR / f"{endpoint}.yaml"
    return own if own.is_file() else MODEL_CONFIG_DIR / f"{handler_name(endpoint)}.yaml"


class ArchiveError(RuntimeError):
    """torch-model-archiver failed."""


def source_files() -> list[Path]:
    """Everything an archive depends on: handlers, the core, the model configs."""
    files = [*HANDLERS_DIR.glob("*.py"), *(ROOT / "convlens").rglob("*.py"), *MODEL_CONFIG_DIR.glob("*.yaml")]
    return [f for f in files if f.is_file()]


def sources_mtime(files: Iterable[Path] | None = None) -> float:
    return max((f.stat().st_mtime for f in (files if files is not None else source_files())), default=0.0)


def model_config(endpoint: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The endpoint's YAML config with ``overrides`` (e.g. ``{"batchSize": 1}``) applied on top."""
    config = yaml.safe_load(config_source(endpoint).read_text()) or {}
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def is_stale(archive: Path, config_file: Path, config_text: str) -> bool:
    if not archive.is_file() or not config_file.is_file():
        return True
    if config_file.read_text() != config_text:
        return True
    return archive.stat().st_mtime < sources_mtime()


def build_archive(endpoint: str, out_dir: Path, overrides: Mapping[str, Any] | None = None,
                  force: bool = False) -> tuple[Path, bool]:
    """Build ``out_dir/<endpoint>.mar`` if stale; returns (path, rebuilt)."""
    if endpoint not in all_endpoints():
        raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(all_endpoints())}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{endpoint}.mar"
    config_file = out_dir / f"{endpoint}.model-config.yaml"
    config_text = yaml.safe_dump(model_config(endpoint, overrides), sort_keys=True)
    if not force and not is_stale(archive, config_file, config_text):
        return archive, False
    config_file.write_text(config_text)
    cmd = [sys.executable, "-c", "from model_archiver.model_packaging import generate_model_archive as g; g()",
           "--model-name", endpoint, "--version", VERSION,
           "--handler", str(HANDLERS_DIR / f"{handler_name(endpoint)}.py"),
           "--config-file", str(config_file),
           "--export-path", str(out_dir), "--force"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0 or not archive.is_file():
        config_file.unlink(missing_ok=True)
        raise ArchiveError(f"torch-model-archiver failed for {endpoint}: {(out.stderr or out.stdout).strip()[-2000:]}")
    return archive, True


def build_archives(out_dir: Path, force: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   endpoints: Iterable[str] | None = None, log: Callable[[str], None] | None = None) -> list[Path]:
    """Build (when stale) the archive of every endpoint into ``out_dir``; ``overrides`` per endpoint."""
    paths = []
    for endpoint in endpoints if endpoints is not None else all_endpoints():
        path, rebuilt = build_archive(endpoint, out_dir, (overrides or {}).get(endpoint), force)
        if log is not None:
            log(f"{'built' if rebuilt else 'up to date'}: {path}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "serve" / "run" / "model-store"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    build_archives(Path(args.out), force=args.force, log=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
