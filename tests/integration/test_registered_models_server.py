"""Your own model on the real server: `convlens model add` while it runs, then every technique through the API.

Two models unlike the built-in one go into the running server's models directory from the command line: a
``timm:`` architecture and a ``python:`` class (1 input channel, functional ReLUs, a residual add). Without a
restart, every technique of every endpoint answers on both through ``convlens call``, and removing one makes
the next request a 4xx naming ``model``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from convlens import registry
from serve import server
from tests.core.test_contract import QUICK
from tests.core.test_zoo import NET_PY, tiny_net
from tests.integration.test_torchserve import CONVLENS, ROOT, _cli_env

SAMPLES = ROOT / "dashboard" / "samples"
INPUTS = {"image": SAMPLES / "ring.png", "content": SAMPLES / "ring.png", "style": SAMPLES / "textures" / "brick.png"}
TECHNIQUES = [s.name for s in registry.registry().values() if s.family != "corpus"]


def model_cli(models_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVLENS_MODELS_DIR": str(models_dir)}
    return subprocess.run([CONVLENS, "model", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def added(server_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    work = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    save_file(timm.create_model("resnet10t", pretrained=False, num_classes=3).state_dict(), work / "t.safetensors")
    (work / "classes.txt").write_text("ok\nscratch\ndent\n")
    out = model_cli(server_models_dir, "add", "defects", "--arch", "timm:resnet10t", "--weights",
                    str(work / "t.safetensors"), "--classes", str(work / "classes.txt"), "--kwargs",
                    '{"num_classes": 3}', "--input-size", "64", "--resize-size", "72")
    assert out.returncode == 0, out.stderr
    (work / "net.py").write_text(NET_PY)
    save_file(tiny_net().state_dict(), work / "g.safetensors")
    (work / "seven.txt").write_text("\n".join(f"c{i}" for i in range(7)) + "\n")
    out = model_cli(server_models_dir, "add", "greyres", "--arch", "python:net.py:build", "--code",
                    str(work / "net.py"), "--weights", str(work / "g.safetensors"), "--classes",
                    str(work / "seven.txt"), "--input-size", "40", "--channels", "1", "--mean", "0.5", "--std", "0.25")
    assert out.returncode == 0, out.stderr
    return ("defects", "greyres")


def call(info: server.ServerInfo, technique: str, model: str, out: Path) -> subprocess.CompletedProcess[str]:
    spec = registry.get(technique)
    fields = {f for f in spec.params.__dataclass_fields__}  # type: ignore[attr-defined]
    params = [f"{k}={json.dumps(v)}" for k, v in QUICK.items() if k in fields]
    argv = [CONVLENS, "call", technique, *[str(INPUTS[name]) for name in spec.inputs], "--model", model,
            "--target", "1", "--json", "--out", str(out), *[a for p in params for a in ("--param", p)]]
    return subprocess.run(argv, cwd=ROOT, env=_cli_env(info), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model", ["defects", "greyres"])
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_technique_answers_on_a_model_added_while_the_server_runs(
        torchserve: server.ServerInfo, added: tuple[str, ...], model: str, technique: str, tmp_path: Path) -> None:
    out = call(torchserve, technique, model, tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    if registry.get(technique).declared.of("images"):
        assert data["images"] and all(Path(p).stat().st_size > 0 for p in data["images"].values())
    else:  # a prediction answers with the model's classes
        assert data["topk"] and data["target"] == 1


def test_a_removed_model_is_refused_naming_model(torchserve: server.ServerInfo, server_models_dir: Path,
                                                 added: tuple[str, ...], tmp_path: Path) -> None:
    assert model_cli(server_models_dir, "remove", "defects").returncode == 0
    out = call(torchserve, "gradcam", "defects", tmp_path)
    assert out.returncode == 1 and "model" in out.stderr and "Traceback" not in out.stderr
