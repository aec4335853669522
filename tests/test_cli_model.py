"""``convlens model add|list|show|check|remove`` through :func:`convlens.cli.main`, with a tiny python: model."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save_file

from convlens.cli import main
from tests.core.test_zoo import NET_PY, SEVEN, tiny_net


@pytest.fixture
def user(tmp_path: Path) -> Path:
    path = tmp_path / "user"
    path.mkdir()
    (path / "net.py").write_text(NET_PY)
    (path / "classes.txt").write_text("\n".join(SEVEN) + "\n")
    save_file(tiny_net().state_dict(), path / "exported.safetensors")
    return path


def add_args(user: Path, name: str = "gray", *extra: str) -> list[str]:
    return ["model", "add", name, "--arch", "python:net.py:build", "--code", str(user / "net.py"),
            "--weights", str(user / "exported.safetensors"), "--classes", str(user / "classes.txt"),
            "--input-size", "40", "--channels", "1", "--mean", "0.5", "--std", "0.25",
            "--description", "grey parts", *extra]


def test_round_trip(models: Path, user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(add_args(user, "gray", "--cam-layer", "conv2")) == 0
    out = capsys.readouterr().out
    assert "added gray to" in out and "Grad-CAM layer conv2" in out and "7: zero, one" in out

    assert main(["model", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "models=1 available=1"
    assert lines[1].split()[:2] == ["gray", "available"] and "grey parts" in lines[1]

    assert main(["model", "show", "gray"]) == 0
    out = capsys.readouterr().out
    assert 'name = "gray"' in out and 'source = "python:net.py:build"' in out and "sha256=" in out

    assert main(["model", "check", "gray"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("ok gray seconds=")

    (models / "gray" / "classes.txt").write_text("only\n")
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "unavailable  classes: 1 classes but the model gives 7 logits" in out and "available=0" in out
    assert main(["model", "check", "gray"]) == 2
    assert capsys.readouterr().err == "convlens: error: classes: 1 classes but the model gives 7 logits\n"

    assert main(["model", "remove", "gray"]) == 0
    assert capsys.readouterr().out == "removed gray\n"
    assert main(["model", "list"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "models=0 available=0"


@pytest.mark.parametrize(("extra", "field"), [
    (["--arch", "torchvision:nosuchnet"], "architecture.source"),
    (["--mean", "0.5,x"], "preprocessing.mean"),
    (["--kwargs", "{num_classes: 3}"], "architecture.kwargs"),
    (["--kwargs", '{"num_classes": 10}'], "weights"),
    (["--input-size", "3"], "preprocessing.input_size"),
    (["--strip-prefix", "stem."], "weights"),
])
def test_a_failing_add_prints_one_line_and_writes_nothing(models: Path, user: Path, capsys: pytest.CaptureFixture[str],
                                                          extra: list[str], field: str) -> None:
    assert main(add_args(user, "bad", *extra)) == 2  # argparse: the last --arch / --mean wins
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"convlens: error: {field}: "), captured.err
    assert not models.exists() or [p.name for p in models.iterdir()] == []


def test_the_same_name_twice(models: Path, user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(add_args(user)) == 0
    assert main(add_args(user)) == 2
    assert "convlens: error: name: a model named 'gray' already exists" in capsys.readouterr().err
    assert main([*add_args(user), "--replace"]) == 0
    assert sorted(p.name for p in models.iterdir()) == ["gray"]
