"""The two neuron techniques declare the params they share once (``NeuronRendering``); each lists what it renders
first, then how, with the API's field names unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from convlens.registry import describe_params
from convlens.techniques.synthesis.neuron import NeuronGalleryParams, NeuronParams, NeuronRendering

SHARED = [f.name for f in dataclasses.fields(NeuronRendering)]


@pytest.mark.parametrize(("params", "own"), [(NeuronParams, ["channel", "unit"]),
                                             (NeuronGalleryParams, ["first", "count"])])
def test_each_lists_the_layer_and_what_it_renders_then_the_shared_rendering(params: type, own: list[str]) -> None:
    assert issubclass(params, NeuronRendering)
    assert [row["name"] for row in describe_params(params)] == ["layer", *own, *SHARED]
    assert {"steps", "lr", "size", "seed"} <= set(SHARED)


def test_the_shared_fields_differ_only_in_the_gallery_s_step_count() -> None:
    one, gallery = ({row["name"]: row for row in describe_params(cls)} for cls in (NeuronParams, NeuronGalleryParams))
    differing = [name for name in SHARED if one[name] != gallery[name]]
    assert differing == ["steps"] and gallery["steps"]["default"] < one["steps"]["default"]
    assert gallery["steps"]["max"] == one["steps"]["max"]
