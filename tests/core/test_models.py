"""The model zoo and weights resolution. No test touches the network: weights files are made here."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import models as tvm

from convlens.hooks import UnknownLayerError
from convlens.models import REGISTRY, WeightsNotFoundError, get_spec, load_model, model_names, weights_search_paths


@pytest.fixture
def weights_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty CONVLENS_WEIGHTS_DIR and an empty torch hub cache."""
    own, torch_home = tmp_path / "own", tmp_path / "torch"
    own.mkdir()
    monkeypatch.setenv("CONVLENS_WEIGHTS_DIR", str(own))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    hub = torch_home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    return own, hub


def test_registry_lists_every_model_with_preprocessing_and_classes() -> None:
    assert model_names()[:len(REGISTRY)] == tuple(REGISTRY) and "digits" in model_names()  # shipped, registered
    for name, spec in REGISTRY.items():
        prep = spec.preprocessing
        if name == "builtin":
            assert prep.input_size == 64 and len(spec.classes) == 10
        else:
            assert prep.input_size == 224 and prep.resize_size >= 224
            assert len(spec.classes) == 1000 and spec.classes[0] == "tench"
            assert re.fullmatch(r"[a-z0-9_-]+-[0-9a-f]{8}\.pth", spec.weights_file)


def test_missing_weights_name_the_file_and_the_command(weights_dirs: tuple[Path, Path]) -> None:
    own, hub = weights_dirs
    expected = get_spec("resnet18").weights_file
    assert weights_search_paths("resnet18") == [own / expected, hub / expected]
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("resnet18")
    message = str(info.value)
    assert expected in message and str(hub) in message
    assert "convlens weights fetch resnet18" in message


@pytest.mark.parametrize("where", ["own", "hub"])
def test_weights_resolve_from_either_directory(weights_dirs: tuple[Path, Path], where: str) -> None:
    torch.manual_seed(3)
    reference = tvm.resnet18()
    directory = weights_dirs[0] if where == "own" else weights_dirs[1]
    torch.save(reference.state_dict(), directory / get_spec("resnet18").weights_file)
    loaded = load_model("resnet18")
    assert loaded.weights == "imagenet"
    assert torch.equal(loaded.net.fc.weight, reference.fc.weight)
    assert not loaded.net.training and not any(p.requires_grad for p in loaded.net.parameters())


def test_own_directory_takes_precedence_over_the_hub_cache(weights_dirs: tuple[Path, Path]) -> None:
    own, hub = weights_dirs
    name = get_spec("resnet18").weights_file
    torch.manual_seed(1)
    torch.save(tvm.resnet18().state_dict(), hub / name)
    torch.manual_seed(2)
    mine = tvm.resnet18()
    torch.save(mine.state_dict(), own / name)
    assert torch.equal(load_model("resnet18").net.fc.weight, mine.fc.weight)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.target),))  # type: ignore[attr-defined]


def test_weights_are_loaded_with_weights_only(weights_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    own, _hub = weights_dirs
    sentinel = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.target = str(sentinel)  # type: ignore[attr-defined]
    with open(own / get_spec("resnet18").weights_file, "wb") as f:
        pickle.dump({"fc.weight": exploit}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_model("resnet18")
    assert not sentinel.exists()


def test_random_weights_only_when_asked_and_labelled(weights_dirs: tuple[Path, Path]) -> None:
    loaded = load_model("alexnet", weights="random")
    assert loaded.weights == "random"
    with pytest.raises(ValueError, match="random"):
        load_model("alexnet", weights="imagenet")  # type: ignore[arg-type]


def test_densenet_files_with_legacy_key_names_load(weights_dirs: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    reference = tvm.densenet121()
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in reference.state_dict().items()}
    assert any(".norm.1." in k for k in legacy)
    torch.save(legacy, weights_dirs[0] / get_spec("densenet121").weights_file)
    loaded = load_model("densenet121")
    assert torch.equal(loaded.net.features.denseblock1.denselayer1.norm1.weight,
                       reference.features.denseblock1.denselayer1.norm1.weight)


def test_googlenet_files_with_auxiliary_heads_load(weights_dirs: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    reference = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    torch.save(reference.state_dict(), weights_dirs[1] / get_spec("googlenet").weights_file)
    loaded = load_model("googlenet")
    assert loaded.weights == "imagenet" and loaded.net.aux1 is None
    assert torch.equal(loaded.net.fc.weight, reference.fc.weight)


def test_builtin_loads_from_the_committed_checkpoint() -> None:
    loaded = load_model("builtin")
    assert loaded.weights == "builtin"
    assert loaded.classes[:2] == ("circle", "square") and len(loaded.classes) == 10
    display, x = loaded.prepare(Image.new("RGB", (100, 80), (200, 10, 10)))
    assert display.shape == (3, 64, 64) and x.shape == (1, 3, 64, 64)
    assert torch.allclose(display[0], torch.full((64, 64), 200 / 255))
    assert loaded.net(x).shape == (1, 10)
    assert loaded.layer(loaded.default_cam_layer).is_spatial
    with pytest.raises(UnknownLayerError, match="features"):
        loaded.layer("features.99")
