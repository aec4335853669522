"""The shipped digits model folder, loaded the plain way (tomllib, importlib, safetensors), and its training script."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from convlens.builtin import digits
from convlens.builtin.digits import MODEL_DIR, TrainConfig, heldout_split, load_images, pixel_stats, random_shift

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


def read_manifest(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "model.toml").read_text())


def build(folder: Path) -> nn.Module:
    """The manifest's ``python:FILE:BUILDER`` with its kwargs, weights loaded strictly, in eval mode."""
    manifest = read_manifest(folder)
    kind, file, builder = manifest["architecture"]["source"].split(":")
    assert kind == "python"
    spec = importlib.util.spec_from_file_location(f"digits_net_{folder.name}", folder / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, builder)(**manifest["architecture"].get("kwargs", {}))
    net.load_state_dict(load_file(folder / manifest["weights"]["file"]), strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return load_images()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build(MODEL_DIR)


@pytest.fixture(scope="module")
def card() -> dict[str, Any]:
    return json.loads((MODEL_DIR / "card.json").read_text())


def test_weights_are_the_cards_and_fill_the_architecture(model: nn.Module, card: dict[str, Any]) -> None:
    weights = MODEL_DIR / read_manifest(MODEL_DIR)["weights"]["file"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["weights_sha256"]
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert weights.stat().st_size < 1_000_000


def test_heldout_accuracy_is_at_least_097_and_the_cards(data: tuple[torch.Tensor, torch.Tensor], model: nn.Module,
                                                         card: dict[str, Any]) -> None:
    images, labels = data
    split = json.loads((MODEL_DIR / "heldout.json").read_text())
    held = np.asarray(split["indices"])
    assert np.array_equal(held, heldout_split(labels, split["fraction"], split["split_seed"])[1])
    pre = read_manifest(MODEL_DIR)["preprocessing"]
    x = (images[held] - pre["mean"][0]) / pre["std"][0]
    with torch.no_grad():
        right = (model(x).argmax(1) == labels[held]).double()
    assert float(right.mean()) >= 0.97
    assert float(right.mean()) == pytest.approx(card["heldout_accuracy"], abs=1e-6)
    assert card["n_heldout"] == len(held)
    for c, name in enumerate(digits.CLASSES):
        assert float(right[labels[held] == c].mean()) == pytest.approx(card["heldout_per_class"][name], abs=1e-6)


def test_manifest_agrees_with_the_weights_the_classes_and_the_data(data: tuple[torch.Tensor, torch.Tensor],
                                                                   model: nn.Module) -> None:
    manifest = read_manifest(MODEL_DIR)
    assert manifest["name"] == MODEL_DIR.name
    weights = load_file(MODEL_DIR / manifest["weights"]["file"])
    pre = manifest["preprocessing"]
    assert pre["channels"] == len(pre["mean"]) == len(pre["std"]) == weights["features.0.weight"].shape[1] == 1
    assert pre["input_size"] == pre["resize_size"] == 32
    images, labels = data
    train_idx, _ = heldout_split(labels)
    assert (pre["mean"][0], pre["std"][0]) == pixel_stats(images[train_idx])
    classes = (MODEL_DIR / manifest["classes"]["file"]).read_text().splitlines()
    assert classes == [str(d) for d in range(10)]
    assert manifest["architecture"]["kwargs"]["num_classes"] == weights["classifier.weight"].shape[0] == 10


def test_manifest_layers_are_the_last_16px_relu_and_the_classifiers_input(model: nn.Module) -> None:
    layers = read_manifest(MODEL_DIR)["layers"]
    cam, code = model.get_submodule(layers["cam"]), model.get_submodule(layers["code"])
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert isinstance(cam, nn.ReLU) and isinstance(code, nn.ReLU)
    assert relus[-1] == layers["code"] and relus[-3] == layers["cam"]  # the last ReLU at 16×16, then 8×8
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(key, out))
               for key, m in (("cam", cam), ("code", code))]
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, 1, 32, 32))
    finally:
        for h in handles:
            h.remove()
    assert seen["cam"].shape == (2, 64, 16, 16)
    assert torch.allclose(model.classifier(seen["code"]), logits)


def test_the_folder_holds_no_pickle_and_a_valid_safetensors_file() -> None:
    for path in MODEL_DIR.iterdir():
        assert path.suffix not in PICKLE_SUFFIXES, path.name
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"
    blob = (MODEL_DIR / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    assert set(header) == set(build(MODEL_DIR).state_dict())
    spans = sorted(tuple(entry["data_offsets"]) for entry in header.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert 8 + n + spans[-1][1] == len(blob)
    assert {entry["dtype"] for entry in header.values()} == {"F32"}


def test_loader_gives_all_digits_as_unit_range_32px_images(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = data
    assert images.shape == (1797, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.99
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


def test_split_is_stratified_disjoint_and_fixed(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = data
    train_idx, held = heldout_split(labels)
    assert np.array_equal(held, heldout_split(labels)[1])
    assert len(np.intersect1d(train_idx, held)) == 0 and len(train_idx) + len(held) == len(labels)
    counts, held_counts = np.bincount(labels.numpy(), minlength=10), np.bincount(labels[held].numpy(), minlength=10)
    assert (held_counts > 0).all()
    assert np.array_equal(held_counts, np.round(0.2 * counts).astype(int))


def test_random_shift_translates_each_image_by_at_most_max_shift() -> None:
    images = torch.zeros(50, 1, 9, 9)
    images[:, :, 4, 4] = 1.0
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and torch.equal(shifted.sum((1, 2, 3)), torch.ones(50))
    rows, cols = shifted[:, 0].nonzero()[:, 1], shifted[:, 0].nonzero()[:, 2]
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10


def test_one_epoch_on_200_images_lowers_the_loss_and_moves_every_weight(
        data: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A smoke test: the first steps sit on the usual plateau near ln 10, so the fall is small but certain."""
    images, labels = data[0][:200], data[1][:200]
    mean, std = pixel_stats(images)
    config = TrainConfig(epochs=1, batch_size=32)
    torch.manual_seed(config.seed)
    untrained = digits.load_net_class()(num_classes=10).eval()  # train() starts from this very initialisation
    model, history = digits.train(images, labels, mean, std, config)
    assert len(history) == 7 and all(np.isfinite(r["loss"]) for r in history)
    with torch.no_grad():
        before = F.cross_entropy(untrained(digits.normalize(images, mean, std)), labels)
        after = F.cross_entropy(model(digits.normalize(images, mean, std)), labels)
    assert after < before - 1e-3
    assert not any(torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), model.state_dict().values(),
                                                     strict=True))


def test_write_folder_writes_a_loadable_folder(tmp_path: Path, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, labels = data
    torch.manual_seed(0)
    net = digits.load_net_class()(num_classes=10).eval()
    out = tmp_path / "digits"
    card = digits.write_folder(out, net, 0.3, 0.3, heldout_split(labels)[1], {"heldout_accuracy": 0.1})
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "classes.txt", "heldout.json", "model.toml",
                                                     "net.py", "weights.safetensors"]
    assert json.loads((out / "card.json").read_text()) == card
    assert (out / "net.py").read_bytes() == (MODEL_DIR / "net.py").read_bytes()
    rebuilt = build(out)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values(),
                                                 strict=True))
    assert read_manifest(out)["preprocessing"]["mean"] == [0.3]
