"""Filter galleries: a convolution's weights as pictures (CS231n lecture 12, "first layer" and
"intermediate layer weights"; Krizhevsky et al. 2012, fig. 3)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from convlens.hooks import resolve_layer
from convlens.outputs import Image, Item, Scalar
from convlens.registry import technique
from convlens.results import Grid, Grids, Progress
from convlens.schema import SchemaError


@dataclass(frozen=True)
class FilterParams:
    """``max_filters`` output channels are shown; for a layer whose input is not RGB, ``max_inputs``
    of each filter's input channels, one grey tile each (0 is mid-grey)."""

    layer: str | None = None
    max_filters: int = 64
    max_inputs: int = 16


@technique(name="filters", page="filters", title="Filter gallery", family="activations", params=FilterParams, inputs=(),
           layer="conv", default_layer="first_conv", order=20, reference="Krizhevsky et al. 2012; CS231n", outputs=(
               Image("grid", "{shown:.0f} of {filters:.0f} filters, {kernel_height:.0f}×{kernel_width:.0f}",
                     kind="grid"),
               Scalar("filters", "filters (output channels) of the layer", integer=True),
               Scalar("inputs", "input channels each filter sees", integer=True),
               Scalar("kernel_height", "rows of each kernel", integer=True),
               Scalar("kernel_width", "columns of each kernel", integer=True),
               Scalar("shown", "filters shown in the grid", integer=True),
               Item("filter", "the filter's index"), Item("norm", "its weights' L2 norm"),
               Item("input", "the input channel of the tile (layers whose input is not RGB)", optional=True)))
def filter_gallery(model: nn.Module, x: Tensor | None = None, params: FilterParams = FilterParams(),
                   progress: Progress | None = None) -> Grids:
    """RGB tiles (each filter scaled to [0, 1] by its own min and max) when the layer sees 3 channels;
    otherwise a (filters × inputs) grid of grey tiles, each filter scaled by its own max |w|."""
    if params.layer is None:
        raise SchemaError("layer", "a filter gallery needs a convolution layer")
    for name, value in (("max_filters", params.max_filters), ("max_inputs", params.max_inputs)):
        if not 1 <= value <= 1024:
            raise SchemaError(f"params.{name}", f"must be in [1, 1024], got {value}")
    weight = getattr(resolve_layer(model, params.layer), "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim != 4:
        raise SchemaError("layer", f"{params.layer!r} is not a 2-D convolution (no 4-D weight)")
    w = weight.detach().float().cpu()[: params.max_filters]
    out_channels, in_channels = w.shape[:2]
    norms = w.flatten(1).norm(dim=1)
    if in_channels == 3:
        lo = w.flatten(1).amin(1).view(-1, 1, 1, 1)
        hi = w.flatten(1).amax(1).view(-1, 1, 1, 1)
        tiles = (w - lo) / (hi - lo).clamp_min(1e-12)
        items: list[dict[str, float | int | str]] = [
            {"filter": o, "norm": float(norms[o])} for o in range(out_channels)]
        grid = Grid(tiles, columns=min(out_channels, 16), items=items)
    else:
        shown = w[:, : params.max_inputs]
        scale = shown.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        tiles = (0.5 + shown / (2 * scale)).reshape(-1, 1, *w.shape[2:])
        items = [{"filter": o, "input": i, "norm": float(norms[o])}
                 for o in range(out_channels) for i in range(shown.shape[1])]
        grid = Grid(tiles, columns=shown.shape[1], items=items, colormap="gray")
    return Grids(grids={"grid": grid}, scalars={
        "filters": float(weight.shape[0]), "inputs": float(weight.shape[1]), "kernel_height": float(w.shape[2]),
        "kernel_width": float(w.shape[3]), "shown": float(out_channels)})
