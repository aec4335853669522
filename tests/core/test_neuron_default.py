"""The neuron technique's default channel (issue #27): with no channel asked for, the one whose mean activation on
the model's sample images is the largest — checked by hand on a tiny model whose channels are constants and one
input-dependent channel — and the default layer of the built-in model is a conv stage, not a pooling output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens import registry
from convlens.models import LoadedModel, Preprocessing, load_model
from convlens.techniques.synthesis import probe


def tiny() -> LoadedModel:
    """Channel k of ``conv`` (after ReLU): 0.1, 0.7, 0 (bias −1) and the red value of the pixel (identity
    normalisation), so the channels' means on any images are 0.1, 0.7, 0 and their mean red."""
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[3, 0] = 1.0
        conv.bias.copy_(torch.tensor([0.1, 0.7, -1.0, 0.0]))
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    return LoadedModel("tiny_probe", net.eval().requires_grad_(False), tuple("abcde"),
                       Preprocessing(16, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "random")


def test_the_channel_means_are_the_hand_computed_ones_and_the_default_is_their_largest() -> None:
    loaded = tiny()
    samples = probe.sample_images(loaded)
    assert samples.shape == (probe.SAMPLES, 3, 16, 16) and 0.0 <= float(samples.min()) <= float(samples.max()) <= 1.0
    red = float(samples[:, 0].mean())
    means = probe.channel_means(loaded, "1")
    assert means.tolist() == pytest.approx([0.1, 0.7, 0.0, red], abs=1e-6)
    expected = max(range(4), key=[0.1, 0.7, 0.0, red].__getitem__)
    assert probe.most_active_channel(loaded, "1") == expected


def test_the_neuron_technique_renders_the_most_active_channel_unless_one_is_asked() -> None:
    loaded = tiny()
    spec = registry.get("neuron")
    expected = probe.most_active_channel(loaded, "1")
    chosen = spec.run(loaded, {}, None, spec.params(layer="1", steps=2))
    assert chosen.scalars["channel"] == expected and chosen.scalars["most_active"] == 1.0
    asked = spec.run(loaded, {}, None, spec.params(layer="1", channel=2, steps=2))
    assert asked.scalars["channel"] == 2.0 and asked.scalars["most_active"] == 0.0


def test_the_built_in_model_s_default_is_a_responding_channel_of_its_last_conv_stage() -> None:
    loaded = load_model("builtin")
    layer = loaded.default_layer(registry.get("neuron").default_layer)
    assert "pool" not in loaded.layer(layer).kind.lower()
    means = probe.channel_means(loaded, layer)
    channel = probe.most_active_channel(loaded, layer)
    assert means[channel] == means.max() and means[channel] > 2 * means.median()  # it responds, unlike most
    # its scenes are the built-in dataset's held-out ones, not photographs
    assert probe.sample_images(loaded, 4).shape == (4, 3, 64, 64)
