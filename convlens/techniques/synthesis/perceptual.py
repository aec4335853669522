"""The perceptual network that texture synthesis, style transfer and (optionally) inversion measure with.

``vgg19``       VGG-19 features with ImageNet weights (Gatys et al.'s network) — only when the weights file
                is on this machine; asking for it otherwise is an error naming ``params.network``.
``random_vgg``  a VGG-style network with fixed, seeded random weights: random conv features are a usable
                generative representation for textures and style (He, Wang & Hopcroft 2016;
                Ustyuzhaninov et al. 2017). Offline, always available, always labelled as random.
``model``       the model under study (the built-in model by default).
``auto``        vgg19 when its weights are present, else random_vgg; the result always names the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convlens import images
from convlens.models import LoadedModel, find_weights, load_model
from convlens.schema import SchemaError

Network = Literal["auto", "vgg19", "random_vgg", "model"]
RANDOM_VGG_SEED = 0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Perceptual:
    """A feature extractor with its style layers, content layer and input normalisation."""

    net: nn.Module
    style_layers: tuple[str, ...]
    content_layer: str
    to_input: Callable[[Tensor], Tensor]
    name: str  # "vgg19", "random_vgg", or the model's name
    description: str  # what the result says produced it

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


# widths of the random VGG's blocks (two 3×3 convs each, average pooling between blocks)
_RANDOM_VGG_WIDTHS = (32, 64, 128, 256)


def random_vgg(seed: int = RANDOM_VGG_SEED) -> nn.Sequential:
    """VGG-style stack with He-normal weights drawn from ``seed``; layers named ``conv{b}_{i}``/``relu{b}_{i}``."""
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential()
    c_in = 3
    for b, width in enumerate(_RANDOM_VGG_WIDTHS, start=1):
        if b > 1:
            net.add_module(f"pool{b - 1}", nn.AvgPool2d(2))
        for i in (1, 2):
            conv = nn.Conv2d(c_in, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / (9 * c_in)) ** 0.5)
                assert conv.bias is not None
                conv.bias.zero_()
            net.add_module(f"conv{b}_{i}", conv)
            net.add_module(f"relu{b}_{i}", nn.ReLU())
            c_in = width
    return net.eval().requires_grad_(False)


_CACHE: dict[tuple[str, str], Perceptual] = {}
_LOCK = threading.Lock()


def _vgg19(device: torch.device) -> Perceptual:
    features = load_model("vgg19", weights="pretrained", device=device).net.get_submodule("features")
    # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (Gatys et al. 2016) and relu4_2 for content
    return Perceptual(features, ("1", "6", "11", "20", "29"), "22",
                      lambda x: images.normalize(x, IMAGENET_MEAN, IMAGENET_STD), "vgg19",
                      "VGG-19 features, ImageNet weights (Simonyan & Zisserman 2015)")


# What the random network's description adds: what real weights give, and how to get them (``auto`` then uses them).
WITH_VGG19 = ("With VGG-19's ImageNet weights the results carry the source's real structure — brush strokes, "
              "bricks, the parts of objects — rather than mostly its colours and local statistics: run "
              "`convlens weights fetch vgg19` (or `make weights`, every model) on a machine with internet; "
              "network auto then measures with VGG-19.")


def _random(device: torch.device) -> Perceptual:
    net = random_vgg().to(device)
    return Perceptual(net, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"), "relu3_2",
                      lambda x: images.normalize(x, IMAGENET_MEAN, IMAGENET_STD), "random_vgg",
                      f"VGG-style network with fixed random weights (seed {RANDOM_VGG_SEED}; "
                      f"He, Wang & Hopcroft 2016) — no pretrained weights. {WITH_VGG19}")


def model_layers(loaded: LoadedModel, count: int = 4) -> tuple[tuple[str, ...], str]:
    """Style layers (up to ``count`` spatial activations, shallow to deep) and a content layer of a model."""
    spatial = loaded.spatial_activations
    if not spatial:
        raise SchemaError("params.network", f"{loaded.name} has no spatial layer to measure style with")
    step = max(1, len(spatial) // count)
    style = tuple(spatial[::step][:count])
    return style, spatial[min(len(spatial) - 1, (2 * len(spatial)) // 3)]


def _from_model(loaded: LoadedModel) -> Perceptual:
    style, content = model_layers(loaded)
    return Perceptual(loaded.net, style, content, loaded.preprocessing.normalize, loaded.name,
                      f"{loaded.name} ({loaded.weights} weights), the model under study")


def perceptual(choice: str, loaded: LoadedModel) -> Perceptual:
    """The network ``choice`` names, on the device of ``loaded``; see the module docstring."""
    if choice == "model":
        return _from_model(loaded)
    if choice == "auto":
        choice = "vgg19" if find_weights("vgg19") is not None else "random_vgg"
    if choice == "vgg19" and find_weights("vgg19") is None:
        raise SchemaError("params.network", "VGG-19 ImageNet weights are not on this machine: fetch them with "
                                            "`convlens weights fetch vgg19`, or use network=random_vgg")
    if choice not in ("vgg19", "random_vgg"):
        raise SchemaError("params.network", f"must be one of auto, vgg19, random_vgg, model; got {choice!r}")
    key = (choice, str(loaded.device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _vgg19(loaded.device) if choice == "vgg19" else _random(loaded.device)
        return _CACHE[key]


def network(choice: str, device: torch.device | str) -> Perceptual:
    """``vgg19`` or ``random_vgg`` on ``device`` without a model under study (training the fast style nets)."""
    if choice == "vgg19" and find_weights("vgg19") is None:
        raise SchemaError("network", "VGG-19 ImageNet weights are not on this machine; use random_vgg")
    if choice not in ("vgg19", "random_vgg"):
        raise SchemaError("network", f"must be vgg19 or random_vgg, got {choice!r}")
    device = torch.device(device)
    key = (choice, str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _vgg19(device) if choice == "vgg19" else _random(device)
        return _CACHE[key]
