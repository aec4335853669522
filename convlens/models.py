"""The model zoo: name → architecture, weights, preprocessing, class names, layer catalogue.

Two kinds of model answer to a name: the built-in zoo below (:data:`REGISTRY`: the offline built-in model and
torchvision's ImageNet networks) and registered models, folders with a manifest (:mod:`convlens.zoo`: the
shipped examples and ``$CONVLENS_MODELS_DIR``). :func:`model_names` lists both; :func:`load_model` opens both.

Weights are never downloaded here and never silently replaced by random ones:
ImageNet weights are read from ``$CONVLENS_WEIGHTS_DIR`` or the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) with ``torch.load(..., weights_only=True)``; a
missing file raises :class:`WeightsNotFoundError` naming the file and the command
that fetches it. ``weights="random"`` must be asked for, and the loaded model then
reports ``weights == "random"``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from convlens import images
from convlens.builtin import CHECKPOINT_PATH, CLASSES, IMAGE_SIZE, MEAN, STD, BuiltinNet, load_checkpoint
from convlens.hooks import resolve_layer
from convlens.receptive_field import (
    LayerInfo,
    default_cam_layer,
    default_code_layer,
    default_patch_layer,
    layer_catalogue,
)
from convlens.schema import SchemaError, WeightsKind

WeightsChoice = Literal["pretrained", "random"]


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input: resize the shorter side, centre-crop, normalise.

    Pictures stay RGB everywhere outside the model (display, synthesis, overlays); a model of
    ``channels == 1`` sees their luminance. ``mean``/``std`` have one value per model channel."""

    input_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3

    def display(self, img: Image.Image) -> Tensor:
        """The pixels the model sees, (3, S, S) in [0, 1]: maps are aligned to this."""
        return images.to_tensor(images.resize_and_crop(img, self.resize_size, self.input_size))

    def normalize(self, x: Tensor) -> Tensor:
        """(..., 3, H, W) pictures in [0, 1] → (..., channels, H, W) model input."""
        if self.channels == 1 and x.shape[-3] == 3:
            x = images.luminance(x)
        return images.normalize(x, self.mean, self.std)

    def denormalize(self, x: Tensor) -> Tensor:
        """(..., channels, H, W) model input → (..., 3, H, W) pictures (grey for a one-channel model)."""
        y = images.denormalize(x, self.mean, self.std)
        return y.expand(*y.shape[:-3], 3, *y.shape[-2:]) if y.shape[-3] == 1 else y


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. ``tv_weights`` is the torchvision weights enum (None for builtin)."""

    name: str
    build: Callable[[], nn.Module]
    tv_weights: WeightsEnum | None
    description: str
    state_dict_fixes: Callable[[dict[str, Tensor]], dict[str, Tensor]] = field(default=lambda sd: sd)

    @property
    def weights_file(self) -> str:
        """File name the pretrained weights are expected under."""
        if self.tv_weights is None:
            return CHECKPOINT_PATH.name
        return self.tv_weights.url.rsplit("/", 1)[-1]

    @property
    def weights_url(self) -> str | None:
        return None if self.tv_weights is None else self.tv_weights.url

    @property
    def preprocessing(self) -> Preprocessing:
        if self.tv_weights is None:
            return Preprocessing(IMAGE_SIZE, IMAGE_SIZE, tuple(MEAN), tuple(STD))  # type: ignore[arg-type]
        t = self.tv_weights.transforms()
        return Preprocessing(int(t.crop_size[0]), int(t.resize_size[0]), tuple(t.mean), tuple(t.std))

    @property
    def classes(self) -> tuple[str, ...]:
        if self.tv_weights is None:
            return CLASSES
        return tuple(self.tv_weights.meta["categories"])


def _densenet_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    # The published DenseNet files predate the module names: "norm.1.weight" is now "norm1.weight".
    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", k): v for k, v in sd.items()}


def _googlenet_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}


REGISTRY: dict[str, ModelSpec] = {
    "builtin": ModelSpec("builtin", BuiltinNet, None, "ConvLens built-in CNN: 10 synthetic shape/texture classes"),
    "alexnet": ModelSpec("alexnet", tvm.alexnet, tvm.AlexNet_Weights.DEFAULT, "AlexNet (Krizhevsky et al. 2012)"),
    "vgg16": ModelSpec("vgg16", tvm.vgg16, tvm.VGG16_Weights.DEFAULT, "VGG-16 (Simonyan & Zisserman 2015)"),
    "vgg19": ModelSpec("vgg19", tvm.vgg19, tvm.VGG19_Weights.DEFAULT, "VGG-19 (Simonyan & Zisserman 2015)"),
    "resnet18": ModelSpec("resnet18", tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, "ResNet-18 (He et al. 2016)"),
    "resnet50": ModelSpec("resnet50", tvm.resnet50, tvm.ResNet50_Weights.DEFAULT, "ResNet-50 (He et al. 2016)"),
    "resnet101": ModelSpec("resnet101", tvm.resnet101, tvm.ResNet101_Weights.DEFAULT, "ResNet-101 (He et al. 2016)"),
    "densenet121": ModelSpec(
        "densenet121", tvm.densenet121, tvm.DenseNet121_Weights.DEFAULT, "DenseNet-121 (Huang et al. 2017)",
        _densenet_keys,
    ),
    "squeezenet1_1": ModelSpec(
        "squeezenet1_1", tvm.squeezenet1_1, tvm.SqueezeNet1_1_Weights.DEFAULT, "SqueezeNet 1.1 (Iandola et al. 2016)"
    ),
    "googlenet": ModelSpec(
        "googlenet",
        lambda: tvm.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True),
        tvm.GoogLeNet_Weights.DEFAULT,
        "GoogLeNet / Inception v1 (Szegedy et al. 2015)",
        _googlenet_keys,
    ),
}


def model_names() -> tuple[str, ...]:
    """Every model a request may name: the built-in zoo, then the registered models (available or not)."""
    from convlens import zoo

    return (*REGISTRY, *(e.name for e in zoo.list_models() if e.name not in REGISTRY))


def model_version(name: str) -> str:
    """"" for a built-in model; for a registered one a key that changes whenever its folder's files change
    (a server's model cache compares it on every request, so an edited model is reloaded)."""
    if name in REGISTRY:
        return ""
    from convlens import zoo

    try:
        return zoo.cache_key(zoo.locate(name)[0])
    except zoo.ManifestError:
        raise unknown_model(name) from None


def unknown_model(name: str) -> SchemaError:
    return SchemaError("model", f"unknown model {name!r}; known: {', '.join(model_names())}")


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def weights_search_paths(name: str) -> list[Path]:
    """Where the weights of ``name`` are looked for, in order."""
    spec = get_spec(name)
    if spec.tv_weights is None:
        return [CHECKPOINT_PATH]
    paths = []
    if os.environ.get("CONVLENS_WEIGHTS_DIR"):
        paths.append(Path(os.environ["CONVLENS_WEIGHTS_DIR"]) / spec.weights_file)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file)
    return paths


def find_weights(name: str) -> Path | None:
    """The first existing weights file of ``name`` (a registered model's own file), or None."""
    if name not in REGISTRY:
        from convlens import zoo

        try:
            folder, _root = zoo.locate(name)
            return folder / zoo.parse_manifest(folder, name).weights.file
        except zoo.ManifestError:
            return None
    return next((p for p in weights_search_paths(name) if p.is_file()), None)


def _missing(name: str) -> WeightsNotFoundError:
    spec = get_spec(name)
    where = " or ".join(str(p) for p in weights_search_paths(name))
    if spec.tv_weights is None:
        how = "retrain it with `convlens builtin train`"
    else:
        how = f"fetch it with `convlens weights fetch {name}` (or `make weights`) on a machine with internet"
    return WeightsNotFoundError(
        f"pretrained weights for {name!r} not found: expected {spec.weights_file} at {where}; {how}, "
        "or load with weights='random' to study an untrained network"
    )


@dataclass
class LoadedModel:
    """A network ready for the techniques: eval mode, parameters frozen, on its device."""

    name: str
    net: nn.Module
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    weights: WeightsKind
    defaults: Mapping[str, str] = field(default_factory=dict)  # registered models: a manifest's layer choices
    card: Any = None  # registered models: their convlens.zoo.ModelCard

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @cached_property
    def layers(self) -> list[LayerInfo]:
        if self.card is not None and self.card.layers:
            return list(self.card.layers)  # computed by the model's check, from the same probe
        return layer_catalogue(self.net, self.preprocessing.input_size, self.preprocessing.channels)

    @cached_property
    def default_cam_layer(self) -> str:
        return self.defaults.get("last_spatial") or default_cam_layer(self.net, self.layers)

    @cached_property
    def code_layer(self) -> str:
        """The layer before the classifier (CNN codes); see :func:`convlens.receptive_field.default_code_layer`."""
        return self.defaults.get("code") or default_code_layer(self.net, self.layers)

    @cached_property
    def first_conv_layer(self) -> str:
        """The first module the forward pass reaches that has a 4-D convolution weight."""
        for row in self.layers:
            weight = getattr(self.net.get_submodule(row.name), "weight", None)
            if isinstance(weight, Tensor) and weight.ndim == 4:  # a convolution
                return row.name
        raise ValueError(f"{self.name} has no 2-D convolution")

    @cached_property
    def spatial_activations(self) -> list[str]:
        """The spatial ReLU outputs, shallow to deep (every spatial layer if the net has no ReLU modules)."""
        return [row.name for row in self.layers if row.is_spatial and "relu" in row.kind.lower()] or \
            [row.name for row in self.layers if row.is_spatial]

    @cached_property
    def middle_spatial_layer(self) -> str:
        """The spatial activation halfway through the network (DeepDream's usual depth)."""
        spatial = self.spatial_activations
        return spatial[len(spatial) // 2] if spatial else self.default_cam_layer

    def default_layer(self, kind: str) -> str:
        """The layer a technique uses when none is asked for (``registry.DefaultLayer``)."""
        resolvers = {"last_spatial": lambda: self.default_cam_layer, "first_conv": lambda: self.first_conv_layer,
                     "middle_spatial": lambda: self.middle_spatial_layer,
                     "code": lambda: self.code_layer,
                     "patch": lambda: default_patch_layer(self.layers, self.preprocessing.input_size)}
        if kind not in resolvers:
            raise ValueError(f"unknown default layer {kind!r}; known: {', '.join(resolvers)}")
        return resolvers[kind]()

    def layer(self, name: str) -> LayerInfo:
        """Catalogue row of a layer; raises UnknownLayerError for names outside the catalogue."""
        resolve_layer(self.net, name)
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"layer {name!r} is not reached by the forward pass")

    def prepare(self, img: Image.Image) -> tuple[Tensor, Tensor]:
        """Image → (display (3, S, S) in [0, 1], model input (1, 3, S, S) on the device)."""
        display = self.preprocessing.display(img)
        return display, self.preprocessing.normalize(display).unsqueeze(0).to(self.device)

    def label(self, index: int) -> str:
        return self.classes[index]


def load_state_dict(name: str, path: Path | None = None) -> Mapping[str, Tensor]:
    """Read pretrained weights of ``name`` (safely: weights_only=True)."""
    spec = get_spec(name)
    path = path or find_weights(name)
    if path is None:
        raise _missing(name)
    if spec.tv_weights is None:
        model, _meta = load_checkpoint(path)
        return model.state_dict()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict")
    return spec.state_dict_fixes(dict(state))


def load_model(
    name: str = "builtin", weights: WeightsChoice = "pretrained", device: torch.device | str | None = None
) -> LoadedModel:
    """Build ``name`` with its pretrained weights (or, when asked, random ones).

    ``device`` defaults to the CPU; servers pass the device of their context.
    """
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    if name not in REGISTRY:
        return _load_registered(name, weights, torch.device(device) if device is not None else torch.device("cpu"))
    spec = get_spec(name)
    net = spec.build()
    if weights == "pretrained":
        net.load_state_dict(load_state_dict(name), strict=True)
        kind: WeightsKind = "builtin" if spec.tv_weights is None else "imagenet"
    else:
        kind = "random"
    net.eval().requires_grad_(False)
    net.to(torch.device(device) if device is not None else torch.device("cpu"))
    return LoadedModel(name, net, spec.classes, spec.preprocessing, kind)


@functools.cache
def builtin_card(name: str) -> dict[str, Any]:
    """A built-in model's card like a registered model's: architecture, classes, preprocessing, parameter and
    layer counts (from a build on the ``meta`` device: shapes only, no memory, ~1 s for ResNet-50, once)."""
    spec = get_spec(name)
    with torch.device("meta"):
        net = spec.build()
    pre = spec.preprocessing
    return {"name": name, "description": spec.description, "kind": "builtin" if spec.tv_weights is None else
            "torchvision", "source": "convlens:builtin" if spec.tv_weights is None else f"torchvision:{name}",
            "classes": list(spec.classes), "input_size": pre.input_size, "resize_size": pre.resize_size,
            "channels": 3, "mean": list(pre.mean), "std": list(pre.std),
            "parameters": sum(p.numel() for p in net.parameters()), "weights_file": spec.weights_file,
            "layer_count": len(layer_catalogue(net, pre.input_size))}


def _load_registered(name: str, weights: WeightsChoice, device: torch.device) -> LoadedModel:
    """A model folder (:mod:`convlens.zoo`); a refusal is a :class:`SchemaError` naming ``model`` with the reason.
    ``weights="random"`` re-initialises every module that can (``reset_parameters``), for sanity checks."""
    from convlens import zoo

    try:
        net, card = zoo.load(name)
    except zoo.ManifestError as exc:
        if exc.field == "name":
            raise unknown_model(name) from None
        raise SchemaError("model", f"model {name!r} is unavailable: {exc.field}: {exc.message}") from None
    kind: WeightsKind = "registered"
    if weights == "random":
        torch.manual_seed(0)
        for module in net.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        kind = "random"
    net.eval().requires_grad_(False).to(device)
    pre = Preprocessing(card.input_size, card.resize_size, tuple(card.mean), tuple(card.std), card.channels)
    return LoadedModel(name, net, card.classes, pre, kind,
                       defaults={"last_spatial": card.cam_layer, "code": card.code_layer}, card=card)


def fetch_weights(name: str, directory: Path | None = None, progress: bool = True) -> Path:
    """Download the ImageNet weights of ``name`` into the hub cache (needs internet; not used in tests)."""
    spec = get_spec(name)
    if spec.weights_url is None:
        return CHECKPOINT_PATH
    target_dir = directory or Path(torch.hub.get_dir()) / "checkpoints"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / spec.weights_file
    if not target.is_file():
        match = re.search(r"-([a-f0-9]{6,})\.", spec.weights_file)
        torch.hub.download_url_to_file(spec.weights_url, str(target), match.group(1) if match else None, progress)
    torch.load(target, map_location="cpu", weights_only=True)  # proves the file is a safe state dict
    return target
