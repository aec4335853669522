"""Occlusion (Zeiler & Fergus 2014) against values worked out by hand, and its knobs."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

from convlens.builtin.dataset import render_batch
from convlens.models import load_model
from convlens.pipeline import parse_params
from convlens.schema import SchemaError
from convlens.techniques.attribution.occlusion import (
    OcclusionParams,
    fast_reduced_dtype,
    fill_image,
    occlusion,
    positions,
)
from tests import numerics


class OnePixel(nn.Module):
    """Class 1's logit is twice pixel (1, 1) of channel 0; class 0's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 2 * x[:, 0, 1, 1]
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_positions_cover_the_far_edge() -> None:
    assert positions(10, 4, 4) == [0, 4, 6]
    assert positions(8, 2, 2) == [0, 2, 4, 6]
    assert positions(5, 5, 3) == [0]


def test_map_is_the_mean_drop_over_the_windows_covering_each_pixel() -> None:
    x = torch.ones(1, 3, 4, 4)
    result = occlusion(OnePixel(), x, target=1, params=OcclusionParams(window=2, stride=1, fill="zero"))
    # 9 windows; the 4 that cover pixel (1, 1) drop the logit from 2 to 0 and the probability by σ(2) - 1/2.
    drop = 1 / (1 + math.exp(-2)) - 0.5
    covering = torch.tensor([[1, 2, 1, 0], [2, 4, 2, 0], [1, 2, 1, 0], [0, 0, 0, 0]], dtype=torch.float)
    windows = torch.tensor([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], dtype=torch.float)
    torch.testing.assert_close(result.raw[0], drop * covering / windows)
    torch.testing.assert_close(result.signed["logit_drop"][0], 2 * covering / windows)
    torch.testing.assert_close(result.map[0], covering / windows)  # scaled by its maximum, 1 at (0, 0)
    assert result.target.tolist() == [1] and float(result.score[0]) == pytest.approx(1 / (1 + math.exp(-2)))
    assert result.scalars["windows"] == 9


def test_fills() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(fill_image(x, OcclusionParams(fill="zero"), None), torch.zeros_like(x))
    mean = fill_image(x, OcclusionParams(fill="mean"), None)
    torch.testing.assert_close(mean[:, :, 3, 5], x.mean(dim=(2, 3)))
    blur = fill_image(x, OcclusionParams(window=8, fill="blur"), None)
    assert blur.shape == x.shape and blur.std() < x.std()
    grey = fill_image(x, OcclusionParams(fill=0.5), lambda t: (t - 0.25) / 0.5)
    torch.testing.assert_close(grey, torch.full_like(x, 0.5))


@pytest.fixture(scope="module")
def builtin_batch():  # type: ignore[no-untyped-def]
    loaded = load_model("builtin")
    imgs, _masks, labels = render_batch(4242, 3)
    x = torch.cat([loaded.prepare(Image.fromarray(img))[1] for img in imgs])
    return loaded, x, torch.from_numpy(labels)


def test_the_batch_size_changes_nothing_but_speed(builtin_batch) -> None:  # type: ignore[no-untyped-def]
    loaded, x, labels = builtin_batch
    steps: list[tuple[int, int]] = []
    auto = occlusion(loaded.net, x, labels, OcclusionParams(window=8, stride=8),
                     progress=lambda done, total, _preview: steps.append((done, total)))
    assert steps[-1] == (3 * 64, 3 * 64) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    noise = numerics.batch_rounding(loaded.net, x, (1, 7, int(auto.scalars["batch_size"])))
    tolerance = numerics.unit_scaled_error(numerics.probability_drop_error(noise), float(auto.raw.amax()))
    assert tolerance < 0.01  # far below what a window counted twice or skipped would change
    for batch_size in (1, 7):
        other = occlusion(loaded.net, x, labels, OcclusionParams(window=8, stride=8, batch_size=batch_size))
        # other batch sizes run other kernels: the maps agree within that rounding (tests.numerics)
        torch.testing.assert_close(other.map, auto.map, atol=tolerance, rtol=0)
        assert other.scalars["batch_size"] == batch_size
    assert auto.scalars["batch_size"] > 7  # the memory budget holds many 64-px copies


def test_reduced_precision_agrees_with_float32(builtin_batch) -> None:  # type: ignore[no-untyped-def]
    loaded, x, labels = builtin_batch
    full = occlusion(loaded.net, x, labels, OcclusionParams())
    reduced = occlusion(loaded.net, x, labels, OcclusionParams(precision="reduced"))
    assert reduced.scalars["reduced_precision"] == float(fast_reduced_dtype(x.device) != torch.float32)
    for a, b in zip(full.raw, reduced.raw, strict=True):
        corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert corr >= 0.99


def test_the_target_object_is_where_hiding_hurts(builtin_batch) -> None:  # type: ignore[no-untyped-def]
    loaded, _x, _labels = builtin_batch
    imgs, masks, labels = render_batch(4242, 10)
    x = torch.cat([loaded.prepare(Image.fromarray(img))[1] for img in imgs])
    result = occlusion(loaded.net, x, torch.from_numpy(labels), OcclusionParams())
    mask = torch.from_numpy(masks).float()
    inside = (result.map * mask).sum((1, 2)) / mask.sum((1, 2))
    outside = (result.map * (1 - mask)).sum((1, 2)) / (1 - mask).sum((1, 2))
    assert float((inside > outside).float().mean()) >= 0.9


@pytest.mark.parametrize(("params", "field"), [
    ({"window": 65}, "params.window"), ({"window": 0}, "params.window"), ({"stride": 0}, "params.stride"),
    ({"fill": 1.5}, "params.fill"), ({"batch_size": 0}, "params.batch_size"),
])
def test_bad_params_name_their_field(builtin_batch, params: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    loaded, x, labels = builtin_batch
    with pytest.raises(SchemaError) as info:
        occlusion(loaded.net, x, labels, OcclusionParams(**params))
    assert info.value.field == field


def test_unknown_fill_is_refused_by_the_params_parser() -> None:
    with pytest.raises(SchemaError) as info:
        parse_params(OcclusionParams, {"fill": "sparkle"})
    assert info.value.field == "params.fill" and "'zero' | 'mean' | 'blur' | float" in info.value.message
