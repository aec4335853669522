"""Neural style transfer (Gatys, Ecker & Bethge 2016): x* = argmin α·‖φ_c(x) − φ_c(content)‖² +
β·Σ_l ‖G_l(x) − G_l(style)‖² + γ·TV(x), with the style image resized by the **style scale** before its Gram
matrices are taken, several styles blended by weighting their Gram matrices, optional colour preservation
(luminance-only transfer, Gatys et al. 2017), initialisation from the content or from noise.

The comparison grid runs every (content/style ratio, style scale or blend) cell as one batch of the same
loop; cells already computed for the same images and settings come from a cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from convlens.hooks import capture
from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar, Series
from convlens.registry import bounded, seed_field, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_STEPS, MAX_STYLES, MAX_SYNTHESIS_SIZE, SchemaError
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import STEPS, Inputs, fit, gallery, loop_scalars, synthesis, term
from convlens.techniques.synthesis.loop import LoopResult, optimize
from convlens.techniques.synthesis.param import PixelImage
from convlens.techniques.synthesis.perceptual import Network, Perceptual, perceptual
from convlens.techniques.synthesis.texture import grams

STYLE_INPUTS = ("style", *(f"style_{k}" for k in range(2, MAX_STYLES + 1)))


@dataclass(frozen=True)
class StyleParams:
    """``style_blend``: one weight per style image (summing to 1), default equal; ``style_scale``: the style
    image's size relative to the result's before its Gram matrices are taken."""

    size: int = bounded(256, 32, MAX_SYNTHESIS_SIZE)
    steps: int = bounded(200, 1, MAX_STEPS)
    lr: float = bounded(0.02, 1e-4, 1.0)
    content_weight: float = bounded(1.0, 0.0, 1e6)
    style_weight: float = bounded(10.0, 0.0, 1e6)
    tv_weight: float = bounded(0.05, 0.0, 1e3)
    style_scale: float = bounded(1.0, 0.1, 4.0)
    style_blend: tuple[float, ...] | None = bounded(None, 0.0, 1.0)
    preserve_color: bool = False
    init: Literal["content", "noise"] = "content"
    network: Network = "auto"
    seed: int = seed_field()


@dataclass(frozen=True)
class StyleGridParams:
    """Rows: content/style weight ratios (the style weight is ``1 / ratio``, the content weight 1). Columns:
    style scales, or — with two style images and ``columns=blend`` — the first style's blend weight.

    The default ratios run from mostly content (1000) to mostly style (10): on the shipped samples (random VGG,
    128 px, 100 steps) the style loss falls 5–21× from row to row and the mean pixel changes by 0.04–0.14; at ratio
    1 and below the style has already won and the rows look alike (1, 0.1, 0.01: at most 1.6× and 0.026)."""

    ratios: tuple[float, ...] = bounded((1000.0, 100.0, 10.0), 1e-6, 1e6)
    columns: Literal["scale", "blend"] = "scale"
    scales: tuple[float, ...] = bounded((0.5, 1.0, 2.0), 0.1, 4.0)
    blends: tuple[float, ...] = bounded((0.0, 0.5, 1.0), 0.0, 1.0)
    size: int = bounded(128, 32, 256)
    steps: int = bounded(100, 1, MAX_STEPS)
    lr: float = bounded(0.03, 1e-4, 1.0)
    tv_weight: float = bounded(0.05, 0.0, 1e3)
    init: Literal["content", "noise"] = "content"
    network: Network = "auto"
    seed: int = seed_field()


MAX_GRID_CELLS = 36


def style_images(inputs: Inputs) -> list[Tensor]:
    return [inputs[name] for name in STYLE_INPUTS if name in inputs]


def blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    if len(blend) != count:
        raise SchemaError("params.style_blend", f"needs one weight per style image ({count}), got {len(blend)}")
    if any(w < 0 for w in blend) or abs(sum(blend) - 1.0) > 1e-3:
        raise SchemaError("params.style_blend", f"weights must be >= 0 and sum to 1, got {list(blend)}")
    return list(blend)


def style_grams(net: Perceptual, styles: Sequence[Tensor], weights: Sequence[float], scale: float,
                size: int) -> dict[str, Tensor]:
    """Σ_i w_i G_l(style_i resized to ``scale · size``) per style layer, (1, C, C) each."""
    side = int(min(2 * MAX_SYNTHESIS_SIZE, max(16, round(scale * size))))
    blended: dict[str, Tensor] = {}
    for style, w in zip(styles, weights, strict=True):
        if w == 0:
            continue
        for layer, g in grams(net, fit(style, side).to(net.device), net.style_layers).items():
            blended[layer] = blended[layer] + w * g if layer in blended else w * g
    return blended


def content_features(net: Perceptual, content: Tensor) -> Tensor:
    with torch.no_grad(), capture(net.net, [net.content_layer], detach=True) as captured:
        net.net(net.to_input(content))
    return captured[net.content_layer]


def transfer(net: Perceptual, content: Tensor, targets: dict[str, Tensor], content_weights: Tensor,
             style_weights: Tensor, tv_weight: float, init: str, steps: int, lr: float, seed: int,
             progress: Progress | None) -> LoopResult:
    """One batch: image k matches ``content`` with weight ``content_weights[k]`` and the Gram targets
    (N or 1, C, C) with ``style_weights[k]``."""
    n = len(content_weights)
    objective = (obj.feature_distance(net.content_layer, content_features(net, content), "content_loss")
                 .per_image(content_weights)
                 + obj.gram_distance(targets, "style_loss").per_image(style_weights))
    if tv_weight > 0:
        objective = objective + tv_weight * obj.total_variation()
    generator = torch.Generator().manual_seed(seed)
    start = content.expand(n, -1, -1, -1) if init == "content" else \
        0.5 + 0.1 * torch.randn((n, *content.shape[1:]), generator=generator).to(content.device)
    return optimize(net.net, PixelImage(start), objective, steps, lr=lr, to_input=net.to_input, seed=seed,
                    progress=progress)


def losses(net: Perceptual, x: Tensor, content: Tensor, targets: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Per image (N,): the style loss (Gram distance) and the content loss, unweighted."""
    layers = (*net.style_layers, net.content_layer)
    with torch.no_grad(), capture(net.net, layers, detach=True) as captured:
        net.net(net.to_input(x))
    ctx = obj.Context(x, captured.activations, None)
    style, _ = obj.gram_distance(targets)(ctx)
    content_loss, _ = obj.feature_distance(net.content_layer, content_features(net, content))(ctx)
    return style, content_loss


def preserve_color(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's chrominance (YIQ), (N, 3, H, W)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=result.device)
    yiq_r = torch.einsum("dc,nchw->ndhw", to_yiq, result)
    yiq_c = torch.einsum("dc,nchw->ndhw", to_yiq, content.expand_as(result))
    mixed = torch.cat([yiq_r[:, :1], yiq_c[:, 1:]], dim=1)
    return torch.einsum("dc,nchw->ndhw", torch.linalg.inv(to_yiq), mixed).clamp(0, 1)


def _inputs(inputs: Inputs) -> tuple[Tensor, list[Tensor]]:
    styles = style_images(inputs)
    if not styles:
        raise SchemaError("style", "is required")
    return inputs["content"], styles


@technique(name="style", page="style", title="Neural style transfer (Gatys)", family="synthesis", params=StyleParams,
           inputs=("content", "style"), optional_inputs=STYLE_INPUTS[1:], order=70,
           reference="Gatys, Ecker & Bethge 2016", outputs=(
               Image("content", "content"),
               Image("result", "{seconds:.1f} s · style loss {style_loss:.3g} · content loss {content_loss:.3g}",
                     role="primary"),
               Image("style", "style"), Image("style_{k}", "style {k}"),
               Label("network", "the network the losses were measured with"),
               Scalar("style_loss", "Gram-matrix distance of the result to the style(s)"),
               Scalar("content_loss", "feature distance of the result to the content"),
               STEPS, *term("style_loss", "style loss"), *term("content_loss", "content loss"),
               *term("total_variation", "total variation (when tv_weight > 0)", optional=True)))
def style_transfer(loaded: LoadedModel, inputs: Inputs, target: int | None, params: StyleParams = StyleParams(),
                   progress: Progress | None = None) -> Synthesis:
    """``result`` the stylised content (``size`` on the longer side), ``content`` and ``style`` as used."""
    net = perceptual(params.network, loaded)
    content_image, styles = _inputs(inputs)
    weights = blend_weights(params.style_blend, len(styles))
    content = fit(content_image, params.size).to(net.device)
    targets = style_grams(net, styles, weights, params.style_scale, params.size)
    one = torch.ones(1, device=net.device)
    run = transfer(net, content, targets, one * params.content_weight, one * params.style_weight, params.tv_weight,
                   params.init, params.steps, params.lr, params.seed, progress)
    image = preserve_color(run.image, content) if params.preserve_color else run.image
    style_loss, content_loss = losses(net, image, content, targets)
    shown = {"style" if k == 0 else f"style_{k + 1}": fit(s, params.size) for k, s in enumerate(styles)}
    return synthesis({"result": image, "content": content, **shown}, run.history,
                     {**loop_scalars(run), "style_loss": float(style_loss[0]), "content_loss": float(content_loss[0])},
                     {"network": net.description})


# ------------------------------------------------------------------------------------ the comparison grid

_CELLS: OrderedDict[str, tuple[Tensor, float, float]] = OrderedDict()
_CELLS_LOCK = threading.Lock()
MAX_CACHED_CELLS = 512


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()


def cell_key(images_digest: str, net: Perceptual, params: StyleGridParams, ratio: float, column: float) -> str:
    settings = (net.name, params.columns, params.size, params.steps, params.lr, params.tv_weight, params.init,
                params.seed, ratio, column)
    return f"{images_digest}:{settings!r}"


def cached_cells() -> int:
    with _CELLS_LOCK:
        return len(_CELLS)


@technique(name="style_grid", page="style", title="Style comparison grid", family="synthesis", params=StyleGridParams,
           inputs=("content", "style"), optional_inputs=("style_2",), endpoint="style", order=71,
           reference="Gatys et al. 2016, fig. 3 and 4", outputs=(
               Image("content", "content"),
               Image("result", "the grid: rows are content/style ratios, columns style scales or blends", kind="grid",
                     role="primary"),
               Image("cell_{row}_{col}", "cell of row {row}, column {col}"),
               Label("network", "the network the losses were measured with"),
               Label("rows", "what the rows vary, and their values"),
               Label("columns", "what the columns vary, and their values"),
               Scalar("rows", "rows of the grid", integer=True), Scalar("columns", "columns of the grid", integer=True),
               Scalar("cells", "cells of the grid", integer=True),
               Scalar("cached_cells", "cells taken from the cache", integer=True),
               Scalar("style_loss_{row}_{col}", "style loss of the cell of row {row}, column {col}"),
               Scalar("content_loss_{row}_{col}", "content loss of the cell of row {row}, column {col}"),
               Scalar("steps", "steps run (0 when every cell came from the cache)", integer=True),
               # a curve only when some cell was computed
               Series("style_loss", "style loss per step", optional=True),
               Series("content_loss", "content loss per step", optional=True),
               Series("total_variation", "total variation per step", optional=True)))
def style_grid(loaded: LoadedModel, inputs: Inputs, target: int | None, params: StyleGridParams = StyleGridParams(),
               progress: Progress | None = None) -> Synthesis:
    """``result``: the grid (rows = ratios, columns = scales or blends); ``cell_<r>_<c>`` each cell.
    ``scalars``: per cell ``style_loss_<r>_<c>``, ``content_loss_<r>_<c>``, and how many cells were cached."""
    net = perceptual(params.network, loaded)
    content_image, styles = _inputs(inputs)
    if params.columns == "blend" and len(styles) != 2:
        raise SchemaError("params.columns", f"a blend sweep needs exactly two style images, got {len(styles)}")
    columns = params.scales if params.columns == "scale" else params.blends
    if len(params.ratios) * len(columns) > MAX_GRID_CELLS:
        raise SchemaError("params.ratios", f"at most {MAX_GRID_CELLS} cells (ratios × columns), got "
                                           f"{len(params.ratios) * len(columns)}")
    content = fit(content_image, params.size).to(net.device)
    digest = _digest(content, *[fit(s, params.size) for s in styles])
    cells = [(r, c) for r in range(len(params.ratios)) for c in range(len(columns))]
    keys = {cell: cell_key(digest, net, params, params.ratios[cell[0]], columns[cell[1]]) for cell in cells}
    with _CELLS_LOCK:
        done = {cell: _CELLS[keys[cell]] for cell in cells if keys[cell] in _CELLS}
    todo = [cell for cell in cells if cell not in done]
    run: LoopResult | None = None
    if todo:
        per_cell: list[dict[str, Tensor]] = []
        for _, c in todo:
            scale, weights = (columns[c], [1.0 / len(styles)] * len(styles)) if params.columns == "scale" else \
                (1.0, [columns[c], 1 - columns[c]])
            per_cell.append(style_grams(net, styles, weights, scale, params.size))
        targets = {layer: torch.cat([t[layer] for t in per_cell]) for layer in net.style_layers}
        ratios = torch.tensor([params.ratios[r] for r, _ in todo], device=net.device)
        run = transfer(net, content, targets, torch.ones_like(ratios), 1.0 / ratios, params.tv_weight, params.init,
                       params.steps, params.lr, params.seed, progress)
        style_loss, content_loss = losses(net, run.image, content, targets)
        with _CELLS_LOCK:
            for k, cell in enumerate(todo):
                entry = (run.image[k].cpu(), float(style_loss[k]), float(content_loss[k]))
                done[cell] = entry
                if not run.cancelled:
                    _CELLS[keys[cell]] = entry
                    _CELLS.move_to_end(keys[cell])
            while len(_CELLS) > MAX_CACHED_CELLS:
                _CELLS.popitem(last=False)
    elif progress is not None:
        progress(1, 1, done[cells[0]][0])
    tiles = torch.stack([done[cell][0] for cell in cells])
    scalars = {"cells": float(len(cells)), "cached_cells": float(len(cells) - len(todo)),
               "rows": float(len(params.ratios)), "columns": float(len(columns))}
    for r, c in cells:
        scalars[f"style_loss_{r}_{c}"] = done[(r, c)][1]
        scalars[f"content_loss_{r}_{c}"] = done[(r, c)][2]
    # every cell from the cache: no step ran, and the answer says so like any other synthesis answer
    scalars.update({k: v for k, v in loop_scalars(run).items() if not k.startswith("final_")} if run is not None
                   else {"steps": 0.0, "seconds": 0.0, "cancelled": 0.0})
    axis = "scale" if params.columns == "scale" else "blend of style 1"
    return synthesis(
        {"result": gallery(tiles, columns=len(columns)), "content": content,
         **{f"cell_{r}_{c}": done[(r, c)][0] for r, c in cells}},
        run.history if run is not None else {}, scalars,
        {"network": net.description, "rows": "content/style ratio: " + ", ".join(f"{v:g}" for v in params.ratios),
         "columns": f"{axis}: " + ", ".join(f"{v:g}" for v in columns)})
