"""Activation maps of one layer for one image (Chollet §9.4.1; CS231n lecture 12, "activations")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convlens import images
from convlens.hooks import capture
from convlens.outputs import Image, Item, Scalar
from convlens.registry import technique
from convlens.results import Grid, Grids, Progress
from convlens.schema import SchemaError


@dataclass(frozen=True)
class ActivationParams:
    """``sort``: grid order, by channel index or by mean activation (strongest first).
    ``normalize``: each tile by its own range (``channel``, Chollet's display) or all by the layer's.
    ``channel``: one channel to show large over the input. ``max_channels`` caps the grid."""

    layer: str | None = None
    sort: Literal["channel", "mean"] = "channel"
    normalize: Literal["channel", "layer"] = "channel"
    channel: int | None = None
    max_channels: int = 512


@technique(name="activations", title="Activation maps", family="activations", params=ActivationParams,
           page="activations",
           layer="spatial", default_layer="last_spatial", order=10, reference="Chollet 2021 §9.4.1", outputs=(
               Image("input", "what the model saw"),
               Image("grid", "{shown:.0f} of {channels:.0f} channels, one tile each", kind="grid"),
               Scalar("channels", "channels in the layer", role="headline", integer=True),
               Scalar("dead_channels", "channels dead for this image (no unit positive)", role="headline",
                      integer=True),
               Scalar("height", "rows of each channel's map", integer=True),
               Scalar("width", "columns of each channel's map", integer=True),
               Scalar("shown", "channels shown in the grid", integer=True),
               Item("channel", "the channel's index"), Item("mean", "its mean activation"),
               Scalar("layer_min", "smallest activation of the layer (the darkest colour when scaled as a layer)"),
               Scalar("layer_max", "largest activation of the layer (the brightest colour when scaled as a layer)"),
               Item("min", "its smallest activation (its darkest colour when scaled per channel)"),
               Item("max", "its largest activation"), Item("dead", "1 when no unit of it is positive")))
def activation_maps(model: nn.Module, x: Tensor | None, params: ActivationParams = ActivationParams(),
                    progress: Progress | None = None) -> Grids:
    """Every channel of ``params.layer`` for one input ``x`` (1, 3, H, W) as a grid of (1, h, w) tiles.

    A channel is *dead* for this image when none of its units is positive.
    """
    if x is None or x.ndim != 4 or x.shape[0] != 1:
        raise SchemaError("image", "activation maps need exactly one image")
    if params.layer is None:
        raise SchemaError("layer", "activation maps need a layer")
    if not 1 <= params.max_channels <= 4096:
        raise SchemaError("params.max_channels", f"must be in [1, 4096], got {params.max_channels}")
    device = next(model.parameters()).device
    with torch.inference_mode(), capture(model, [params.layer], detach=True) as cap:
        model(x.to(device))
    acts = cap[params.layer][0].float()
    if acts.ndim != 3:
        raise SchemaError("layer", f"{params.layer!r} is not spatial: its output is {tuple(acts.shape)}")
    c = acts.shape[0]
    if params.channel is not None and not 0 <= params.channel < c:
        raise SchemaError("params.channel", f"must be in [0, {c - 1}] for {params.layer!r}, got {params.channel}")
    means, peaks, lows = acts.mean(dim=(1, 2)), acts.amax(dim=(1, 2)), acts.amin(dim=(1, 2))
    dead = peaks <= 0
    if params.normalize == "channel":
        scaled = images.normalize_map(acts)
    else:
        scaled = (acts - acts.min()) / (acts.max() - acts.min()).clamp_min(1e-12)
    scaled = torch.where(dead[:, None, None], torch.zeros_like(scaled), scaled)
    order = torch.argsort(means, descending=True, stable=True) if params.sort == "mean" else torch.arange(c)
    order = order[: params.max_channels]
    items: list[dict[str, float | int | str]] = [
        {"channel": int(k), "mean": float(means[k]), "min": float(lows[k]), "max": float(peaks[k]),
         "dead": int(dead[k])} for k in order]
    focus = None if params.channel is None else images.normalize_map(acts[params.channel][None])[0]
    columns = max(1, round(len(order) ** 0.5 * 1.5))
    return Grids(
        grids={"grid": Grid(scaled[order][:, None].cpu(), min(columns, len(order)), items)},
        focus=None if focus is None else focus.cpu(),
        scalars={"channels": float(c), "dead_channels": float(dead.sum()), "height": float(acts.shape[1]),
                 "width": float(acts.shape[2]), "shown": float(len(order)), "layer_min": float(acts.min()),
                 "layer_max": float(acts.max())},
    )
