"""Top patches' default layer: a unit whose receptive field is a part of the input, not all of it."""

from __future__ import annotations

import pytest
from torch import nn

from convlens import registry
from convlens.models import load_model
from convlens.pipeline import resolve_layer
from convlens.receptive_field import default_patch_layer, layer_catalogue
from convlens.schema import PATCH_FIELD_SHARE, patch_layer


def stack() -> nn.Sequential:
    """Fields by hand (size_out = size_in + (k - 1)·jump_in): 3, 5 (jump 2), 9, 13 (jump 4), 21."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                         nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                         nn.Conv2d(4, 4, 3, padding=1)).eval()


@pytest.mark.parametrize(("input_size", "expected"), [(32, "3"), (20, "2"), (10, "1"), (4, "0")])
def test_the_deepest_layer_whose_field_is_at_most_half_the_input(input_size: int, expected: str) -> None:
    catalogue = layer_catalogue(stack(), input_size)
    assert [r.receptive_field for r in catalogue] == [3, 5, 9, 13, 21]
    assert default_patch_layer(catalogue, input_size) == expected


def test_without_a_small_enough_field_the_shallowest_spatial_layer() -> None:
    assert patch_layer([("a", 9, True), ("b", 5, True), ("pool", 1, False)], 8) == "b"
    assert patch_layer([("flat", 3, False)], 64) is None


def test_a_container_sharing_its_last_childs_output_is_named() -> None:
    rows = [("block.conv", 10, True), ("block.relu", 10, True), ("block", 10, True), ("next", 40, True)]
    assert patch_layer(rows, 32) == "block"


def test_the_builtin_models_top_patches_default_is_a_part_of_the_image() -> None:
    loaded = load_model("builtin")
    side = loaded.preprocessing.input_size
    layer = resolve_layer(loaded, registry.get("top_patches"), None)
    assert layer is not None
    field = loaded.layer(layer).receptive_field
    assert field < side and field <= PATCH_FIELD_SHARE * side, (layer, field, side)
    deeper = [r for r in loaded.layers[[r.name for r in loaded.layers].index(layer) + 1:] if r.is_spatial]
    assert all(r.receptive_field > PATCH_FIELD_SHARE * side for r in deeper)  # and the deepest such layer
