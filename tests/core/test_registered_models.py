"""Every technique works on models that are not in the built-in zoo.

Three registered models unlike the built-in one: a ``timm:`` architecture with random weights saved as
safetensors, a ``python:`` factory model with one input channel, a 40-px input, 7 classes, functional
activations (no ReLU modules) and a residual add, and the shipped digits model (real data, 1 channel).
Each technique runs through the pipeline (the path the server takes) with its quickest settings; its
output has the documented shapes, lies in [0, 1] where it is a picture, and is finite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from convlens import images, registry, zoo
from convlens.hooks import count_hooks
from convlens.models import LoadedModel, load_model, model_names
from convlens.pipeline import run
from convlens.schema import SchemaError
from tests.core.test_contract import quick_params
from tests.core.test_zoo import NET_PY, tiny_net

REGISTERED = ("tinytimm", "greyres", "digits")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models")
    work = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(zoo.MODELS_DIR_ENV, str(root))
        torch.manual_seed(0)
        save_file(timm.create_model("resnet10t", pretrained=False, num_classes=4).state_dict(),
                  work / "timm.safetensors")
        zoo.add("tinytimm", "timm:resnet10t", work / "timm.safetensors", ["w", "x", "y", "z"],
                kwargs={"num_classes": 4}, input_size=48, resize_size=56)
        (work / "net.py").write_text(NET_PY)  # 1 channel, functional ReLUs, a residual add
        save_file(tiny_net().state_dict(), work / "grey.safetensors")
        zoo.add("greyres", "python:net.py:build", work / "grey.safetensors", [f"c{i}" for i in range(7)],
                input_size=40, channels=1, mean=[0.5], std=[0.25], code=work / "net.py")
        yield root


class Loaded(dict[str, LoadedModel]):
    """Each model loaded once, when a test first asks for it."""

    def __missing__(self, name: str) -> LoadedModel:
        self[name] = load_model(name)
        return self[name]


@pytest.fixture(scope="module")
def loaded(models_dir: Path) -> Loaded:
    return Loaded()


def test_registered_models_are_listed_after_the_builtin_zoo(models_dir: Path) -> None:
    names = model_names()
    assert names.index("builtin") < names.index("digits") and set(REGISTERED) <= set(names)


def test_a_registered_model_loads_with_its_own_preprocessing(loaded: Loaded) -> None:
    grey = loaded["greyres"]
    assert grey.weights == "registered" and grey.preprocessing.channels == 1 and len(grey.classes) == 7
    display, x = grey.prepare(Image.new("RGB", (60, 50), (200, 100, 50)))
    assert display.shape == (3, 40, 40) and x.shape == (1, 1, 40, 40)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255  # the luminance PIL's "L" mode gives
    torch.testing.assert_close(float(x[0, 0, 20, 20]) * 0.25 + 0.5, expected, atol=1 / 255, rtol=0)
    assert grey.preprocessing.denormalize(x).shape == (1, 3, 40, 40)
    timm_model = loaded["tinytimm"].preprocessing
    assert (timm_model.input_size, timm_model.resize_size) == (48, 56)
    assert timm_model.mean == pytest.approx(timm.create_model("resnet10t").pretrained_cfg["mean"])


@pytest.mark.parametrize("model", REGISTERED)
@pytest.mark.parametrize("name", [s.name for s in registry.registry().values() if s.family != "corpus"])
def test_every_technique_runs_on_a_registered_model(name: str, model: str, loaded: Loaded) -> None:
    lm = loaded[model]
    spec = registry.get(name)
    state = {k: v.clone() for k, v in lm.net.state_dict().items()}
    inputs = [{k: Image.new("RGB", (50, 44), (30 * i, 90, 200)) for k in spec.inputs} for i in range(2)]
    outputs = run(lm, name, inputs, targets=[1, 2], params=quick_params(spec))
    assert len(outputs) == 2
    for out in outputs:
        assert out.technique == name and out.weights == "registered"
        assert out.images or (not spec.declared.of("images") and out.topk), "a picture, or a prediction's classes"
        for picture in out.images.values():
            assert torch.isfinite(picture).all() and 0 <= float(picture.min()) and float(picture.max()) <= 1
            assert picture.ndim == 2 or picture.shape[-3] in (1, 3)
            assert images.encode_png(picture)[:4] == b"\x89PNG"  # what the server sends
        if spec.family == "attribution":
            side = lm.preprocessing.input_size
            assert out.images["map"].shape[-2:] == (side, side)
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.scalars.values())
    assert count_hooks(lm.net) == 0
    assert all(torch.equal(state[k], v) for k, v in lm.net.state_dict().items())


@pytest.mark.parametrize("model", REGISTERED)
def test_codes_of_a_registered_model(model: str, loaded: Loaded) -> None:
    lm = loaded[model]
    [out] = run(lm, "codes", [{"images": [Image.new("RGB", (30, 30), (i * 60, 20, 90)) for i in range(3)]}])
    assert len(out.vectors) == 3 and out.layer == lm.code_layer
    assert all(torch.isfinite(torch.tensor(v)).all() for v in out.vectors)


def test_an_unknown_or_broken_model_is_refused_naming_model(models_dir: Path) -> None:
    with pytest.raises(SchemaError) as unknown:
        load_model("nosuchmodel")
    assert unknown.value.field == "model" and "digits" in unknown.value.message
    broken = models_dir / "broken"
    broken.mkdir()
    (broken / "model.toml").write_text('name = "broken"\n[architecture]\nsource = "torchvision:nosuchnet"\n')
    with pytest.raises(SchemaError) as refused:
        load_model("broken")
    assert refused.value.field == "model" and "unavailable" in refused.value.message
    assert "architecture" in refused.value.message or "weights" in refused.value.message
    assert load_model("greyres").weights == "registered"  # the others are untouched


@pytest.mark.parametrize(("method", "least"), [("gradcam", 0.80), ("vanilla", 0.80), ("guided", 0.80)])
def test_maps_of_the_digits_model_point_at_the_strokes(method: str, least: float, loaded: Loaded) -> None:
    """Pointing game (Zhang et al. 2016) on the 359 held-out digits: the map's maximum lies on the ink (pixels
    brighter than 1/4, grown by one pixel as the game's tolerance allows)."""
    from convlens.builtin import digits
    from convlens.faithfulness import pointing_hits

    lm = loaded["digits"]
    pictures, labels = digits.load_images()
    held = torch.tensor(json.loads((digits.MODEL_DIR / "heldout.json").read_text())["indices"])
    x, y = pictures[held], labels[held]
    spec = registry.get(method)
    maps = spec.run(lm.net, lm.preprocessing.normalize(x), y, spec.params(**(
        {"layer": lm.default_cam_layer} if method == "gradcam" else {}))).map
    score = float(pointing_hits(maps, x[:, 0] > 0.25, tolerance=1).float().mean())
    assert score >= least, f"{method}: {score:.3f} of the maps' maxima on the strokes"


@pytest.mark.parametrize("model", REGISTERED)
def test_a_dataset_seen_through_a_registered_model(model: str, loaded: Loaded, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes, embedding, neighbours and top patches of a small dataset, through the registered model's own
    preprocessing (a 1-channel model sees the images' luminance)."""
    from convlens.corpus import datasets as store

    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    store.builtin("set", 24)
    lm = loaded[model]
    [embedding] = run(lm, "embedding", [{}], params={"dataset": "set", "projection": "pca"})
    assert embedding.layer == lm.code_layer and embedding.points is not None
    assert np.asarray(embedding.points).shape == (24, 2) and np.isfinite(embedding.points).all()
    [near] = run(lm, "neighbours", [{}], params={"dataset": "set", "query": 3, "k": 4, "space": "code"})
    distances = [item["distance"] for item in near.items]
    assert len(near.items) == 4 and 3 not in {item["index"] for item in near.items}  # the query is left out
    assert distances == sorted(distances) and np.isfinite(distances).all()
    [patches] = run(lm, "top_patches", [{}], params={"dataset": "set", "channel": 0, "k": 3})
    assert patches.images and all(torch.isfinite(p).all() for p in patches.images.values())
