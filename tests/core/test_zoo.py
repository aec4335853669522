"""Your own models (``convlens.zoo``): a folder with a manifest, checked strictly. Tiny models only."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor
from torchvision import models as tvm

from convlens import zoo
from convlens.receptive_field import layer_catalogue
from convlens.schema import SchemaError
from convlens.zoo import ManifestError
from convlens.zoo.manifest import parse_source

# A python: model: 1 input channel, 7 classes, functional activations (no ReLU modules), a residual add.
NET_PY = '''
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 7, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.conv2(F.relu(self.conv1(x))))
        x = F.relu(self.down(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def build(num_classes: int = 7, width: int = 8) -> Net:
    return Net(num_classes, width)
'''
SEVEN = ["zero", "one", "two", "three", "four", "five", "six"]
THREE = ["ok", "scratch", "dent"]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class Smuggled:
    """Not a tensor: ``torch.load(weights_only=True)`` must refuse a checkpoint holding one."""

    def __init__(self) -> None:
        self.payload = "anything"


pytestmark = pytest.mark.usefixtures("models")  # tests/conftest.py: a fresh models directory


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Where the user's files (weights, code, classes) live before they are added."""
    path = tmp_path / "user"
    path.mkdir()
    (path / "net.py").write_text(NET_PY)
    return path


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, Tensor]:
    torch.manual_seed(0)
    return tvm.resnet18(num_classes=3).state_dict()


def tiny_net(**kwargs: Any) -> torch.nn.Module:
    space: dict[str, Any] = {}
    exec(compile(NET_PY, "net.py", "exec"), space)
    torch.manual_seed(0)
    return space["build"](**kwargs)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash: equal before and after = nothing written or touched."""
    out = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def add_tiny(files: Path, name: str = "tiny", state: dict[str, Tensor] | None = None, **kw: Any) -> zoo.ModelCard:
    weights = files / f"{name}.safetensors"
    save_file(tiny_net().state_dict() if state is None else state, weights)
    args: dict[str, Any] = {"input_size": 40, "channels": 1, "mean": [0.5], "std": [0.25], "code": files / "net.py"}
    return zoo.add(name, "python:net.py:build", weights, kw.pop("classes", SEVEN), **{**args, **kw})


def add_resnet18(files: Path, state: dict[str, Tensor], name: str = "defects", **kw: Any) -> zoo.ModelCard:
    weights = files / "exported.safetensors"
    save_file(state, weights)
    args: dict[str, Any] = {"kwargs": {"num_classes": 3}, "input_size": 64, "resize_size": 72, **IMAGENET}
    return zoo.add(name, "torchvision:resnet18", weights, kw.pop("classes", THREE), **{**args, **kw})


@pytest.fixture
def neighbour(models: Path, files: Path) -> dict[str, str]:
    """A good model already in the directory; a refused add must leave it (and everything else) as it was."""
    add_tiny(files, "neighbour")
    return snapshot(models)


def refused(field: str, call: Callable[[], object], root: Path, before: dict[str, str] | None = None) -> str:
    """``call`` raises a ManifestError naming ``field`` in one line, and the models directory is unchanged."""
    before = snapshot(root) if before is None else before
    with pytest.raises(ManifestError) as info:
        call()
    assert info.value.field == field, str(info.value)
    assert isinstance(info.value, SchemaError) and "\n" not in str(info.value)
    assert snapshot(root) == before
    return info.value.message


def assert_ready(net: torch.nn.Module, card: zoo.ModelCard) -> None:
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        out = net(torch.rand(2, card.channels, card.input_size, card.input_size))
    assert out.shape == (2, len(card.classes))


# ---------------------------------------------------------------------------------------------- good models


def test_models_dir_defaults_beside_the_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.MODELS_DIR_ENV)
    monkeypatch.setenv("CONVLENS_DATA_DIR", str(tmp_path / "root" / "datasets"))
    assert zoo.models_dir() == tmp_path / "root" / "models" and zoo.models_dir().is_dir()


def test_torchvision_resnet18_from_safetensors(models: Path, files: Path, resnet18_state: dict[str, Tensor]) -> None:
    card = add_resnet18(files, resnet18_state, description="Defects on line 3")
    folder = models / "defects"
    assert sorted(p.name for p in models.iterdir()) == ["defects"]  # no .tmp- left behind
    assert sorted(p.name for p in folder.iterdir()) == ["classes.txt", "model.toml", "weights.safetensors"]
    assert (card.name, card.kind, card.source, card.classes) == ("defects", "torchvision", "torchvision:resnet18",
                                                                  tuple(THREE))
    assert (card.channels, card.input_size, card.resize_size) == (3, 64, 72)
    assert card.mean == tuple(IMAGENET["mean"]) and card.description == "Defects on line 3"
    assert card.weights_sha256 == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    assert card.weights_sha256 == hashlib.sha256((files / "exported.safetensors").read_bytes()).hexdigest()
    assert (card.cam_layer, card.code_layer) == ("layer4", "avgpool")  # layer4 is 2×2 at 64 px
    net, loaded = zoo.load("defects")
    assert loaded == card
    assert card.parameters == sum(p.numel() for p in net.parameters())
    assert card.layer_count == len(layer_catalogue(net, 64)) == len(card.layers)
    assert_ready(net, card)
    reference = tvm.resnet18(num_classes=3).eval()
    reference.load_state_dict(resnet18_state)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))  # the weights really are the exported ones
    assert card.to_json()["classes"] == THREE and "layers" not in card.to_json()


def test_timm_model_takes_its_preprocessing_from_timm(models: Path, files: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    weights = files / "t.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False, num_classes=4).state_dict(), weights)
    card = zoo.add("small", "timm:test_resnet", weights, list("abcd"), kwargs={"num_classes": 4})
    assert (card.kind, card.channels, card.input_size, card.resize_size) == ("timm", 3, 160, 168)  # 160 / 0.95
    assert card.mean == (0.5, 0.5, 0.5) and card.std == (0.5, 0.5, 0.5)
    card = zoo.add("small", "timm:test_resnet", weights, list("abcd"), kwargs={"num_classes": 4}, input_size=64,
                   replace=True)
    assert (card.input_size, card.resize_size) == (64, 64)  # the manifest wins; resize defaults to input_size
    net, card = zoo.load("small")
    assert_ready(net, card)


def test_python_model_with_one_channel_functional_relu_and_a_residual(models: Path, files: Path) -> None:
    card = add_tiny(files, "gray")
    assert sorted(p.name for p in (models / "gray").iterdir()) == [
        "classes.txt", "model.toml", "net.py", "weights.safetensors"]
    assert (card.kind, card.channels, card.input_size, card.resize_size) == ("python", 1, 40, 40)
    assert card.classes == tuple(SEVEN) and card.mean == (0.5,) and card.std == (0.25,)
    assert (card.cam_layer, card.code_layer) == ("down", "down")
    assert card.parameters == sum(p.numel() for p in tiny_net().parameters())
    net, card = zoo.load("gray")
    assert_ready(net, card)
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(net(x), tiny_net().eval()(x))
    assert add_tiny(files, "gray2", cam_layer="conv2").cam_layer == "conv2"


def test_pt_checkpoint_under_a_key_with_prefixes_stripped(models: Path, files: Path) -> None:
    state = {f"module.{k}": v for k, v in tiny_net().state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3, "note": "best"}, files / "ckpt.pth")
    card = zoo.add("ckpt", "python:net.py:build", files / "ckpt.pth", SEVEN, input_size=40, channels=1, mean=[0.5],
                   std=[0.25], key="state_dict", strip_prefix=["module.", "model."], code=files / "net.py")
    assert card.weights_file == "weights.pth"
    assert card.weights_sha256 == hashlib.sha256((files / "ckpt.pth").read_bytes()).hexdigest()
    net, card = zoo.load("ckpt")
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(net(x), tiny_net().eval()(x))


def test_hand_written_folder_with_inline_names(models: Path, files: Path) -> None:
    folder = models / "hand"
    folder.mkdir(parents=True)
    (folder / "net.py").write_text(NET_PY)
    save_file(tiny_net(num_classes=2).state_dict(), folder / "w.safetensors")
    (folder / "model.toml").write_text(
        'name = "hand"\n[architecture]\nsource = "python:net.py:build"\nkwargs = { num_classes = 2 }\n'
        '[weights]\nfile = "w.safetensors"\n[classes]\nnames = ["cat", "dog"]\n'
        '[preprocessing]\ninput_size = 40\nchannels = 1\nmean = [0.5]\nstd = [0.25]\n'
        '[layers]\ncam = "conv1"\ncode = "down"\n')
    card = zoo.check(folder)
    assert card.classes == ("cat", "dog") and (card.cam_layer, card.code_layer) == ("conv1", "down")
    [entry] = zoo.list_models()
    assert (entry.name, entry.status, entry.card) == ("hand", "available", card)


def test_a_broken_model_never_hides_the_others(models: Path, files: Path) -> None:
    add_tiny(files, "good")
    add_tiny(files, "broken")
    (models / "broken" / "weights.safetensors").write_bytes(b"garbage")
    (models / "Bad Name").mkdir()
    (models / ".tmp-leftover").mkdir()
    entries = {e.name: e for e in zoo.list_models()}
    assert sorted(entries) == ["Bad Name", "broken", "good"]
    assert entries["good"].status == "available" and entries["good"].reason is None
    assert entries["broken"].status == "unavailable" and entries["broken"].reason.startswith("weights.file: ")
    assert entries["Bad Name"].reason.startswith("name: ")
    assert entries["broken"].to_json()["card"] is None


def test_cache_key_is_stable_and_follows_every_file(models: Path, files: Path) -> None:
    add_tiny(files, "keyed")
    folder = models / "keyed"
    key = zoo.cache_key(folder)
    assert zoo.cache_key(folder) == key
    save_file({k: v + 1 for k, v in tiny_net().state_dict().items()}, folder / "weights.safetensors")
    assert zoo.cache_key(folder) != key
    key = zoo.cache_key(folder)
    (folder / "classes.txt").write_text("\n".join(reversed(SEVEN)) + "\n")
    assert zoo.cache_key(folder) != key
    assert zoo.list_models()[0].card.classes == tuple(reversed(SEVEN))  # the listing is not stale


def test_remove(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    add_tiny(files, "gone")
    zoo.remove("gone")
    assert snapshot(models) == neighbour
    assert "no model 'gone'" in refused("name", lambda: zoo.remove("gone"), models)


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("source", ["torchvision:nosuchnet", "timm:nosuchnet", "foo:bar", "resnet18",
                                    "torchvision:../x", "python:net.py", "python:net.txt:build"])
def test_unknown_architecture(models: Path, files: Path, neighbour: dict[str, str], source: str) -> None:
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    refused("architecture.source", lambda: zoo.add("new", source, weights, SEVEN, input_size=32, **IMAGENET),
            models, neighbour)


def test_an_unknown_architecture_suggests_close_names(models: Path, files: Path) -> None:
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    message = refused("architecture.source", lambda: zoo.add("new", "torchvision:resnet19", weights, SEVEN,
                                                              input_size=32, **IMAGENET), models)
    assert "'resnet19'" in message and "resnet18" in message


def test_a_huge_architecture_for_small_weights_is_refused_before_it_is_built(
        models: Path, files: Path, neighbour: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG-19 (548 MiB of weights) named with a 30 KiB file: refused from a meta-device build, never allocated."""
    import torchvision.models as tvm_models

    built: list[str] = []
    real = tvm_models.get_model
    monkeypatch.setattr(tvm_models, "get_model", lambda *a, **k: built.append(str(torch.empty(0).device)) or
                        real(*a, **k))
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    message = refused("architecture.source", lambda: zoo.add("new", "torchvision:vgg19", weights, SEVEN,
                                                              input_size=32, **IMAGENET), models, neighbour)
    assert "548" in message and "cannot match" in message
    assert built == ["meta"]  # the only build was on the meta device


def test_wrong_num_classes_is_a_shape_mismatch(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    torch.manual_seed(0)
    ten = tvm.resnet18(num_classes=10).state_dict()
    message = refused("weights", lambda: add_resnet18(files, ten), models, neighbour)
    assert "key 'fc.weight' has shape (10, 512), the architecture expects (3, 512)" in message
    assert "key 'fc.bias' has shape (10), the architecture expects (3)" in message


def test_classes_fewer_than_the_logits(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    state = tiny_net(num_classes=10).state_dict()
    message = refused("classes", lambda: add_tiny(files, "ten", state, kwargs={"num_classes": 10}), models,
                      neighbour)
    assert message == "7 classes but the model gives 10 logits"


def test_missing_key(models: Path, files: Path, neighbour: dict[str, str],
                     resnet18_state: dict[str, Tensor]) -> None:
    state = {k: v for k, v in resnet18_state.items() if k != "fc.bias"}
    assert refused("weights", lambda: add_resnet18(files, state), models, neighbour) == "missing key 'fc.bias'"


def test_unexpected_key(models: Path, files: Path, neighbour: dict[str, str],
                        resnet18_state: dict[str, Tensor]) -> None:
    state = {**resnet18_state, "head.extra": torch.zeros(2)}
    assert refused("weights", lambda: add_resnet18(files, state), models, neighbour) == "unexpected key 'head.extra'"


def test_unstripped_prefix_gets_a_hint(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    state = {f"module.{k}": v for k, v in tiny_net().state_dict().items()}
    message = refused("weights", lambda: add_tiny(files, "pre", state), models, neighbour)
    assert message.startswith("missing keys 'stem.weight', 'stem.bias', 'conv1.weight' (and 7 more)")
    assert 'set weights.strip_prefix = ["module."]' in message


def test_truncated_safetensors(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = refused("weights.file", lambda: zoo.add("new", "python:net.py:build", weights, SEVEN, input_size=40,
                                                       channels=1, mean=[0.5], std=[0.25], code=files / "net.py"),
                      models, neighbour)
    assert "not a valid safetensors file" in message


def test_a_pickle_disguised_as_safetensors(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    weights = files / "w.safetensors"
    torch.save(tiny_net().state_dict(), weights)
    message = refused("weights.file", lambda: zoo.add("new", "python:net.py:build", weights, SEVEN, input_size=40,
                                                       channels=1, mean=[0.5], std=[0.25], code=files / "net.py"),
                      models, neighbour)
    assert "not a valid safetensors file" in message


def test_a_pickled_object_is_refused(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    torch.save({"w": Smuggled()}, files / "evil.pt")
    message = refused("weights.file", lambda: zoo.add("new", "python:net.py:build", files / "evil.pt", SEVEN,
                                                       input_size=40, channels=1, mean=[0.5], std=[0.25],
                                                       code=files / "net.py"), models, neighbour)
    assert "not a plain state dict (pickled objects are refused)" in message


def test_a_checkpoint_needs_its_key(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    torch.save({"state_dict": tiny_net().state_dict(), "epoch": 3}, files / "ckpt.pt")

    def add(**kw: Any) -> zoo.ModelCard:
        return zoo.add("new", "python:net.py:build", files / "ckpt.pt", SEVEN, input_size=40, channels=1,
                       mean=[0.5], std=[0.25], code=files / "net.py", **kw)

    assert "weights.key = 'state_dict'" in refused("weights.key", add, models, neighbour)
    assert "no key 'model'" in refused("weights.key", lambda: add(key="model"), models, neighbour)


@pytest.mark.parametrize("name", ["../evil", "a/b", "net\n", "Net", "", ".hidden", "x" * 65])
def test_bad_names(models: Path, files: Path, neighbour: dict[str, str], name: str) -> None:
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    refused("name", lambda: zoo.add(name, "python:net.py:build", weights, SEVEN, input_size=40, channels=1,
                                    mean=[0.5], std=[0.25], code=files / "net.py"), models, neighbour)
    for call in (zoo.load, zoo.remove, zoo.show):
        refused("name", lambda c=call: c(name), models, neighbour)


def test_adding_an_existing_name_is_refused_unless_replace(models: Path, files: Path,
                                                           neighbour: dict[str, str]) -> None:
    message = refused("name", lambda: add_tiny(files, "neighbour", classes=list("abcdefg")), models, neighbour)
    assert "already exists" in message
    card = add_tiny(files, "neighbour", classes=list("abcdefg"), replace=True)
    assert card.classes == tuple("abcdefg") and zoo.load("neighbour")[1].classes == tuple("abcdefg")
    assert sorted(p.name for p in models.iterdir()) == ["neighbour"]


def test_a_folder_symlink_pointing_out(models: Path, files: Path, tmp_path: Path) -> None:
    add_tiny(files, "good")
    add_tiny(files, "evil")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(models / "evil", outside / "evil")
    (models / "evil").symlink_to(outside / "evil")
    assert "outside the models directory" in refused("name", lambda: zoo.load("evil"), models)
    entries = {e.name: e for e in zoo.list_models()}
    assert entries["good"].status == "available" and entries["evil"].reason.startswith("name: ")
    zoo.remove("evil")  # the link only
    assert (outside / "evil" / "model.toml").is_file() and not (models / "evil").is_symlink()


def test_a_weights_symlink_pointing_out(models: Path, files: Path, tmp_path: Path) -> None:
    add_tiny(files, "linked")
    weights = models / "linked" / "weights.safetensors"
    os.rename(weights, tmp_path / "elsewhere.safetensors")
    weights.symlink_to(tmp_path / "elsewhere.safetensors")
    assert "resolves outside the model folder" in refused("weights.file", lambda: zoo.load("linked"), models)
    weights.unlink()
    weights.symlink_to("classes.txt")  # pointing inside is allowed (and then not a safetensors file)
    refused("weights.file", lambda: zoo.load("linked"), models)


def test_python_code_outside_the_folder(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    for source in ("python:../net.py:build", "python:/tmp/net.py:build", "python:a/../../net.py:build"):
        with pytest.raises(ManifestError) as info:
            parse_source(source)
        assert info.value.field == "architecture.source"
    weights = files / "w.safetensors"
    save_file(tiny_net().state_dict(), weights)
    refused("architecture.source", lambda: zoo.add("new", "python:../net.py:build", weights, SEVEN, input_size=40,
                                                    channels=1, mean=[0.5], std=[0.25], code=files / "net.py"),
            models, neighbour)
    message = refused("architecture.source", lambda: zoo.add("new", "python:net.py:build", weights, SEVEN,
                                                              input_size=40, channels=1, mean=[0.5], std=[0.25]),
                      models, neighbour)
    assert "never over the API" in message


def test_manifest_over_the_size_limit(models: Path, files: Path) -> None:
    add_tiny(files, "big")
    manifest = models / "big" / "model.toml"
    manifest.write_text(manifest.read_text() + "# padding\n" * 8000)
    assert manifest.stat().st_size > zoo.MAX_MANIFEST_BYTES
    assert "64 KiB" in refused("model.toml", lambda: zoo.load("big"), models)
    assert zoo.list_models()[0].reason.startswith("model.toml: ")


@pytest.mark.parametrize(("edit", "field"), [
    (lambda t: t.replace("input_size", "input-size"), "preprocessing.input-size"),
    (lambda t: t.replace('name = "m"', 'name = "other"'), "name"),
    (lambda t: t.replace("mean = [0.5]", "mean = [0.5, 0.5]"), "preprocessing.mean"),
    (lambda t: t.replace("std = [0.25]", "std = [0.0]"), "preprocessing.std"),
    (lambda t: t.replace("input_size = 40", "input_size = 100000"), "preprocessing.input_size"),
    (lambda t: t.replace("channels = 1", "channels = 3").replace("mean = [0.5]", "mean = [0.5, 0.5, 0.5]")
     .replace("std = [0.25]", "std = [0.25, 0.25, 0.25]"), "preprocessing"),  # the forward pass fails
    (lambda t: t + '\n[layers]\ncam = "nosuch"\n', "layers.cam"),
    (lambda t: t + '\n[layers]\ncam = "head"\n', "layers.cam"),  # not spatial
    (lambda t: t.replace('file = "weights.safetensors"', 'file = "weights.safetensors"\nkey = "k"'), "weights.key"),
    (lambda t: t.replace('file = "classes.txt"', 'file = "/etc/passwd"'), "classes.file"),
    (lambda t: t.replace('file = "classes.txt"', 'file = "classes.txt"\nnames = ["a"]'), "classes"),
    (lambda t: t.replace('[classes]\nfile = "classes.txt"', '[classes]\nnames = []'), "classes.names"),
    (lambda t: t.replace("[preprocessing]", '[preprocessing]\nresize_size = 20'), "preprocessing.resize_size"),
    (lambda t: "not = toml = at all", "model.toml"),
])
def test_manifest_fields(models: Path, files: Path, edit: Callable[[str], str], field: str) -> None:
    add_tiny(files, "m")
    manifest = models / "m" / "model.toml"
    manifest.write_text(edit(manifest.read_text()))
    refused(field, lambda: zoo.load("m"), models)


def test_torchvision_needs_its_preprocessing_and_downloads_nothing(models: Path, files: Path,
                                                                    resnet18_state: dict[str, Tensor]) -> None:
    refused("preprocessing.input_size", lambda: add_resnet18(files, resnet18_state, input_size=None), models)
    refused("preprocessing.mean", lambda: add_resnet18(files, resnet18_state, mean=None), models)
    refused("architecture.kwargs.weights", lambda: add_resnet18(
        files, resnet18_state, kwargs={"num_classes": 3, "weights": "DEFAULT"}), models)
    refused("architecture.kwargs", lambda: add_resnet18(files, resnet18_state, kwargs={"no_such": 1}), models)


def test_class_names_are_single_lines(models: Path, files: Path, neighbour: dict[str, str]) -> None:
    for bad in (["a\nb"] + SEVEN[1:], [""] + SEVEN[1:], [" zero"] + SEVEN[1:], ["x" * 201] + SEVEN[1:], []):
        refused("classes.names", lambda b=bad: add_tiny(files, "new", classes=b), models, neighbour)
    (files / "classes.txt").write_text("\n\n".join(SEVEN) + "\n\n")  # blank lines are ignored
    assert add_tiny(files, "new", classes=files / "classes.txt").classes == tuple(SEVEN)
