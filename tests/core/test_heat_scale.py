"""Every attribution answer says what its colours stand for: the colour map, the values of its two ends and the
raw map's range (issue #27: a heat map without a scale cannot be read)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from convlens import images, pipeline, registry, render
from convlens.colormaps import plotly_scale
from convlens.models import load_model
from convlens.techniques.attribution.saliency import saliency

SAMPLE = "dashboard/samples/checkerboard.png"


def test_a_linear_models_saliency_scale_by_hand() -> None:
    """f(x) = W x: the gradient of class 0 is W[0], the map max over colours of |W[0]|, its top that maximum."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    result = saliency(model, torch.rand(1, 3, 4, 4), target=0)
    scale = render.heat_scale(result, 0)
    per_pixel = model[1].weight[0].detach().view(3, 4, 4).abs().amax(0)
    assert scale["map_high"] == pytest.approx(float(per_pixel.max()), rel=1e-6)
    assert scale["map_max"] == pytest.approx(float(per_pixel.max()), rel=1e-6)
    assert scale["map_min"] == pytest.approx(float(per_pixel.min()), rel=1e-6)
    assert scale["map_low"] == 0.0 and scale["map_normalised"] == 1.0
    torch.testing.assert_close(result.map[0] * scale["map_high"], per_pixel)  # colour t stands for t · map_high


@pytest.fixture(scope="module")
def builtin():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return load_model("builtin")


@pytest.mark.parametrize("name", [s.name for s in registry.of_family("attribution")])
def test_every_attribution_answer_carries_its_scale(builtin, name: str) -> None:  # type: ignore[no-untyped-def]
    out = pipeline.run(builtin, name, [{"image": Image.open(SAMPLE)}], params={"colormap": "viridis"})[0]
    s = out.scalars
    assert out.labels["colormap"] == "viridis"
    assert s["map_normalised"] == 1.0 and s["map_low"] == 0.0
    assert s["map_min"] <= s["map_max"] and 0.0 < s["map_high"] <= s["map_max"] * (1 + 1e-6)
    # the map is the raw map over map_high: its brightest pixel is colour 1, i.e. map_high
    assert float(out.images["map"].max()) == pytest.approx(1.0, abs=1e-6)
    for image, signed in (("logit_drop", "occlusion"),):  # a signed (H, W) map: its colours span ± max |value|
        assert (f"{image}_abs_max" in s) == (name == signed)
        if name == signed:
            assert s[f"{image}_abs_max"] > 0


def test_gradcams_top_is_the_upsampled_maximum_not_the_layers(builtin) -> None:  # type: ignore[no-untyped-def]
    """Grad-CAM's map is its layer-grid map upsampled bilinearly, whose peak is lower than the grid's."""
    spec = registry.get("gradcam")
    _, x = builtin.prepare(Image.open(SAMPLE))
    result = spec.run(builtin.net, x, None, spec.params())
    scale = render.heat_scale(result, 0)
    up = torch.nn.functional.interpolate(result.raw[:, None], size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)[0, 0].clamp_min(0)
    torch.testing.assert_close(result.map[0] * scale["map_high"], up, rtol=1e-5, atol=1e-6 * scale["map_high"])
    assert scale["map_high"] < scale["map_max"]


@pytest.mark.parametrize("name", images.COLORMAPS)
def test_the_dashboards_colour_bar_is_the_servers_colour_map(name: str) -> None:
    for t, colour in plotly_scale(name):
        expected = images.colormap(torch.tensor([[t]]), name)[:, 0, 0] * 255
        got = torch.tensor([float(c) for c in colour[4:-1].split(",")])
        assert torch.allclose(got, expected, atol=0.5), (name, t, colour)
