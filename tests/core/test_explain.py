"""The attribution pipeline: one image in, named images, top-k and scalars out; bad input named."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from convlens import registry
from convlens.builtin.dataset import CLASSES, render_sample
from convlens.models import LoadedModel, load_model
from convlens.pipeline import explain
from convlens.schema import SchemaError


@pytest.fixture(scope="module")
def builtin() -> LoadedModel:
    return load_model("builtin")


@pytest.fixture(scope="module")
def sample():  # type: ignore[no-untyped-def]
    return render_sample(4242, 3)  # a cross, from a seed no test or training run uses


@pytest.mark.parametrize("method", [s.name for s in registry.of_family("attribution")])
def test_explain_returns_aligned_images_and_top_k(builtin: LoadedModel, sample, method: str) -> None:  # type: ignore[no-untyped-def]
    e = explain(builtin, Image.fromarray(sample.image), method)
    assert e.weights == "builtin" and e.model == "builtin" and e.method == method
    assert e.images["input"].shape == (3, 64, 64) and e.images["overlay"].shape == (3, 64, 64)
    assert e.images["map"].shape == (64, 64)
    assert all(0 <= float(t.min()) and float(t.max()) <= 1 for t in e.images.values())
    declared = registry.get(method).declared
    assert set(e.images) == {d.name for d in declared.of("images") if not d.optional}
    assert ("gradient" in e.images) == (method in ("guided", "smoothgrad"))
    assert ("logit_drop" in e.images) == (method == "occlusion")
    assert len(e.topk) == 5 and [p for *_, p in e.topk] == sorted((p for *_, p in e.topk), reverse=True)
    assert e.target == e.topk[0][0] and e.target_label == CLASSES[e.target] == "cross"
    # The maps put clearly more than their share of mass on the object (Grad-CAM's 8×8 grid is coarse):
    # every one of 10 unseen images more than 1.2×, on average more than 1.5×.
    ratios = []
    for index in range(10):
        other = render_sample(4242, index)
        heat, mask = explain(builtin, Image.fromarray(other.image), method).images["map"], torch.from_numpy(other.mask)
        ratios.append(float(heat[mask].sum() / heat.sum()) / float(mask.float().mean()))
    assert min(ratios) > 1.2 and sum(ratios) / len(ratios) > 1.5, ratios


def test_explain_honours_target_layer_and_display_params(builtin: LoadedModel, sample) -> None:  # type: ignore[no-untyped-def]
    img = Image.fromarray(sample.image)
    layer = builtin.default_cam_layer
    default = explain(builtin, img, "gradcam")
    assert default.layer == layer
    early = explain(builtin, img, "gradcam", target=0, layer="features.2", params={"alpha": 1.0, "topk": 3})
    assert early.target == 0 and early.target_label == "circle" and early.layer == "features.2"
    assert len(early.topk) == 3
    assert not torch.allclose(early.images["map"], default.images["map"])
    summed = explain(builtin, img, "guided", layer="features.5", params={"channel": 7, "reduce": "sum"})
    assert "sum" in summed.objective  # a literal choice other than the default is accepted
    neuron = explain(builtin, img, "guided", layer="features.5", params={"channel": 7})
    assert neuron.target == 7 and neuron.target_label == "channel 7"


def test_non_square_images_are_centre_cropped(builtin: LoadedModel) -> None:
    e = explain(builtin, Image.new("RGB", (300, 100), (40, 90, 200)), "vanilla")
    assert e.images["input"].shape == (3, 64, 64)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "lime"}, "params.method"),
        ({"method": "occlusion", "params": {"window": 65}}, "params.window"),
        ({"method": "occlusion", "params": {"stride": 0}}, "params.stride"),
        ({"method": "occlusion", "params": {"fill": "sparkle"}}, "params.fill"),
        ({"method": "occlusion", "layer": "features.2"}, "layer"),
        ({"method": "gradcam", "layer": "classifier"}, "layer"),
        ({"method": "gradcam", "layer": "code.2"}, "layer"),
        ({"method": "guided", "params": {"channel": 3}}, "params.channel"),
        ({"method": "gradcam", "layer": "features.99"}, "layer"),
        ({"method": "gradcam", "layer": "not a layer"}, "layer"),
        ({"method": "vanilla", "layer": "features.2"}, "layer"),
        ({"method": "vanilla", "target": 10}, "target"),
        ({"method": "vanilla", "params": {"bogus": 1}}, "params.bogus"),
        ({"method": "vanilla", "params": {"alpha": 2}}, "params.alpha"),
        ({"method": "vanilla", "params": {"colormap": "../../etc"}}, "params.colormap"),
        ({"method": "guided", "params": {"reduce": "median"}}, "params.reduce"),
        ({"method": "guided", "layer": "features.2", "params": {"channel": 10_000}}, "params.channel"),
    ],
)
def test_bad_input_names_the_field(builtin: LoadedModel, sample, kwargs: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaError) as info:
        explain(builtin, Image.fromarray(sample.image), **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("method", [s.name for s in registry.of_family("attribution")])
def test_a_batch_with_mixed_targets_equals_single_calls(builtin: LoadedModel, method: str) -> None:
    from convlens.pipeline import run

    imgs = [Image.fromarray(render_sample(777, i).image) for i in (0, 5, 8)]
    targets = [None, 2, None]
    batch = run(builtin, method, [{"image": img} for img in imgs], targets)
    spec, x = registry.get(method), torch.cat([builtin.prepare(img)[1] for img in imgs])
    resolved = torch.tensor([got.target for got in batch])
    together = spec.run(builtin.net, x, resolved, spec.params()).map
    alone = torch.cat([spec.run(builtin.net, x[i:i + 1], resolved[i:i + 1], spec.params()).map for i in range(3)])
    core_drift = 2 * float((together - alone).abs().max()) + 4 * torch.finfo(torch.float32).eps
    assert core_drift < 1e-3  # rounding, not a different map
    for img, target, got in zip(imgs, targets, batch, strict=True):
        single = explain(builtin, img, method, target=target)
        assert got.target == single.target and [t[0] for t in got.topk] == [t[0] for t in single.topk]
        assert [t[2] for t in got.topk] == pytest.approx([t[2] for t in single.topk], abs=1e-5)
        # a batch of 3 runs other float32 kernels than a batch of 1 (and other CPUs others again): the pipeline
        # may differ from single calls by what the technique itself does under the two compositions, no more
        torch.testing.assert_close(got.images["map"], single.images["map"], atol=core_drift, rtol=0)
    assert batch[1].target == 2
