"""Neuron and channel patterns: the input that maximises one channel (or its centre unit) of any layer
(Erhan et al. 2009; Chollet §9.4 "visualizing convnet filters"), and a gallery of a layer's channels
optimised together as one batch (the filter gallery of deep layers). With no channel asked for, the one most
active on the model's sample images (:mod:`probe`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from convlens.models import LoadedModel
from convlens.outputs import Image, Scalar
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_SYNTHESIS_SIZE, SchemaError
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis import probe
from convlens.techniques.synthesis.common import STEPS, Inputs, gallery, loop_scalars, synthesis, term
from convlens.techniques.synthesis.loop import optimize
from convlens.techniques.synthesis.param import make_param
from convlens.techniques.synthesis.transforms import standard

MAX_GALLERY = 64


@dataclass(frozen=True)
class NeuronRendering:
    """How each image of the neuron techniques is optimised: the params both share."""

    steps: int = bounded(128, 1, MAX_STEPS)
    lr: float = bounded(0.02, 1e-4, 1.0)  # 0.05 pinned more pixels at 0 or 1 (built-in gallery: 92 % → 80 %)
    size: int | None = bounded(None, 16, MAX_SYNTHESIS_SIZE)
    parameterisation: Literal["pixels", "fourier"] = "fourier"
    jitter: int = bounded(2, 0, 64)
    seed: int = seed_field()


# Each technique's params: what it renders (its own fields), then how (NeuronRendering's). A dataclass lists the
# fields of its last base first, so the choice, named last, comes first in the info API and the dashboard's form.
@dataclass(frozen=True)
class _ChannelChoice:
    layer: str | None = None
    channel: int | None = bounded(None, 0, None)  # None: the channel most active on the sample images
    unit: Literal["channel", "neuron"] = "channel"


@dataclass(frozen=True)
class NeuronParams(NeuronRendering, _ChannelChoice):
    """``unit``: the channel's mean over all positions, or the single unit at the centre of the map."""


@dataclass(frozen=True)
class _GalleryChoice:
    layer: str | None = None
    first: int = bounded(0, 0, None)
    count: int = bounded(16, 1, MAX_GALLERY)


@dataclass(frozen=True)
class NeuronGalleryParams(NeuronRendering, _GalleryChoice):
    """Channels ``first`` … ``first + count − 1`` of the layer, each its own image in one batch."""

    steps: int = bounded(96, 1, MAX_STEPS)  # a gallery optimises ``count`` images in one batch: fewer steps


def _channels(loaded: LoadedModel, layer: str) -> int:
    shape = loaded.layer(layer).output_shape
    return int(shape[0])


def _render(loaded: LoadedModel, layer: str, channels: torch.Tensor, objective: obj.Objective, steps: int,
            lr: float, size: int | None, parameterisation: str, jitter: int, seed: int,
            progress: Progress | None):  # type: ignore[no-untyped-def]
    side = size or loaded.preprocessing.input_size
    generator = torch.Generator().manual_seed(seed)
    param = make_param(parameterisation, len(channels), (side, side), generator, loaded.device, noise=0.02)
    return optimize(loaded.net, param, objective, steps, lr=lr, to_input=loaded.preprocessing.normalize,
                    transforms=standard(jitter_px=jitter), seed=seed, progress=progress)


@technique(name="neuron", title="Neuron / channel pattern", family="synthesis", params=NeuronParams, inputs=(),
           page="imagine",
           layer="spatial", default_layer="last_spatial", order=20, reference="Erhan et al. 2009; Chollet §9.4",
           outputs=(Image("result", "the input channel {channel:.0f} responds to most", role="primary"),
                    Scalar("channel", "the channel rendered", integer=True),
                    Scalar("most_active", "1 when no channel was asked and the one most active on the model's "
                                          "sample images was rendered", integer=True), STEPS,
                    # the objective term is named by params.unit: the channel's mean or its centre neuron
                    *term("channel", "the channel's mean activation", optional=True),
                    *term("neuron", "the centre neuron's activation", optional=True)))
def neuron_pattern(loaded: LoadedModel, inputs: Inputs, target: int | None,
                   params: NeuronParams = NeuronParams(), progress: Progress | None = None) -> Synthesis:
    assert params.layer is not None
    channel = probe.most_active_channel(loaded, params.layer) if params.channel is None else params.channel
    if channel >= _channels(loaded, params.layer):
        raise SchemaError("params.channel", f"{params.layer} has {_channels(loaded, params.layer)} channels, "
                                            f"got {channel}")
    objective = (obj.channel if params.unit == "channel" else obj.neuron)(params.layer, channel)
    run = _render(loaded, params.layer, torch.tensor([channel]), objective, params.steps, params.lr,
                  params.size, params.parameterisation, params.jitter, params.seed, progress)
    return synthesis({"result": run.image}, run.history, {**loop_scalars(run), "channel": float(channel),
                                                          "most_active": float(params.channel is None)})


@technique(name="neuron_gallery", title="Channel gallery", family="synthesis", params=NeuronGalleryParams,
           page="imagine",
           inputs=(), layer="spatial", default_layer="last_spatial", endpoint="neuron", order=21,
           reference="Chollet §9.4; Olah et al. 2017",
           outputs=(Image("result", "{count:.0f} channels from {first:.0f}, each the input it responds to most",
                          kind="grid", role="primary"),
                    Image("channel_{channel}", "channel {channel}"),
                    Scalar("first", "the first channel rendered", integer=True),
                    Scalar("count", "channels rendered", integer=True), STEPS,
                    *term("channel", "the channels' mean activation")))
def neuron_gallery(loaded: LoadedModel, inputs: Inputs, target: int | None,
                   params: NeuronGalleryParams = NeuronGalleryParams(), progress: Progress | None = None
                   ) -> Synthesis:
    """One batch: image k maximises channel ``first + k``; ``result`` is the mosaic, ``channel_<c>`` each tile."""
    assert params.layer is not None
    total = _channels(loaded, params.layer)
    if params.first >= total:
        raise SchemaError("params.first", f"{params.layer} has {total} channels, got {params.first}")
    channels = torch.arange(params.first, min(total, params.first + params.count))
    run = _render(loaded, params.layer, channels, obj.channel(params.layer, channels.to(loaded.device)),
                  params.steps, params.lr, params.size, params.parameterisation, params.jitter, params.seed, progress)
    tiles = {f"channel_{int(c)}": run.image[k] for k, c in enumerate(channels)}
    return synthesis({"result": gallery(run.image, columns=min(8, len(channels))), **tiles}, run.history,
                     {**loop_scalars(run), "first": float(channels[0]), "count": float(len(channels))})
