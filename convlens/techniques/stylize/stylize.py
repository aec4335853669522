"""Fast style transfer: one forward pass of the built-in conditional style network (``net.py``), trained by
``convlens/training/stylize.py`` on the built-in styles (``convlens/builtin/stylize.pt``, its card beside it),
or the network ``$CONVLENS_STYLE_NET`` names (``convlens style train --out my.pt``).

``style`` names one of the network's styles; ``blend`` weights several (a JSON object style → weight, summing
to 1), which mixes their instance-norm scales and shifts (Dumoulin et al. 2017); ``strength`` interpolates the
result with the content, ``strength · f(x, w) + (1 − strength) · x``. Requests of a batch with equal
parameters and equal image shapes run as one tensor batch.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from convlens.models import LoadedModel
from convlens.outputs import Image, Label, Scalar
from convlens.registry import bounded, technique
from convlens.results import Progress, Synthesis
from convlens.schema import MAX_SYNTHESIS_SIZE, SchemaError
from convlens.techniques.stylize.net import NetConfig, StyleNet
from convlens.techniques.synthesis.common import Inputs, fit, synthesis

BUILTIN_CHECKPOINT = Path(__file__).resolve().parents[2] / "builtin" / "stylize.pt"
# a network of your own (``convlens style train --out my.pt``) replaces the built-in one when named here
CHECKPOINT = Path(os.environ.get("CONVLENS_STYLE_NET") or BUILTIN_CHECKPOINT)


def card_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".card.json")


def checkpoint_styles(checkpoint: Path = BUILTIN_CHECKPOINT) -> tuple[str, ...]:
    """The style names of a checkpoint, read from its model card (cheap: no tensors loaded)."""
    card = card_path(checkpoint)
    if card.is_file():
        return tuple(json.loads(card.read_text())["styles"])
    if checkpoint.is_file():
        return tuple(torch.load(checkpoint, map_location="cpu", weights_only=True)["styles"])
    return ()


STYLES = checkpoint_styles(CHECKPOINT)
StyleName = Literal[STYLES] if STYLES else str  # type: ignore[valid-type]


@dataclass(frozen=True)
class StylizeParams:
    """``style``: one built-in style (default: the first); ``blend``: weights over the styles, summing to 1
    (instead of ``style``); ``strength``: 0 = the content, 1 = fully stylised; ``size``: the result's longer
    side."""

    style: StyleName | None = None  # type: ignore[valid-type]
    blend: dict[str, float] | None = None
    strength: float = bounded(1.0, 0.0, 1.0)
    size: int = bounded(256, 32, MAX_SYNTHESIS_SIZE)


_NETS: dict[tuple[str, str], tuple[StyleNet, tuple[str, ...], str]] = {}
_LOCK = threading.Lock()


def load_stylenet(checkpoint: Path = BUILTIN_CHECKPOINT, device: torch.device | str = "cpu"
                  ) -> tuple[StyleNet, tuple[str, ...], str]:
    """(eval-mode network, style names, perceptual network it was trained with), cached per device."""
    key = (str(checkpoint), str(device))
    with _LOCK:
        if key not in _NETS:
            if not checkpoint.is_file():
                raise SchemaError("params.style", f"no fast style network at {checkpoint}; train one with "
                                                  "`convlens style train`")
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            net = StyleNet(len(state["styles"]), NetConfig.from_dict(state["net"]))
            net.load_state_dict(state["state_dict"])
            net = net.to(device).eval().requires_grad_(False)
            _NETS[key] = (net, tuple(state["styles"]), str(state.get("perceptual", "")))
        return _NETS[key]


def blend_vector(style: str | None, blend: Mapping[str, float] | None, names: Sequence[str]) -> Tensor:
    """(S,) weights over ``names``: a one-hot for ``style`` or the validated ``blend``."""
    if style is not None and blend is not None:
        raise SchemaError("params.blend", "give either a style or a blend, not both")
    if blend is None:
        chosen = style if style is not None else names[0]
        if chosen not in names:
            raise SchemaError("params.style", f"must be one of {', '.join(names)}; got {chosen!r}")
        blend = {chosen: 1.0}
    unknown = [k for k in blend if k not in names]
    if unknown:
        raise SchemaError("params.blend", f"unknown style {unknown[0]!r}; known: {', '.join(names)}")
    if any(w < 0 for w in blend.values()) or abs(sum(blend.values()) - 1.0) > 1e-3:
        raise SchemaError("params.blend", f"weights must be >= 0 and sum to 1, got {dict(blend)}")
    return torch.tensor([float(blend.get(n, 0.0)) for n in names])


def describe_blend(weights: Tensor, names: Sequence[str]) -> str:
    return ", ".join(f"{n} {float(w):.2f}" for n, w in zip(names, weights, strict=True) if float(w) > 0)


def forward_chunk(device: torch.device, group: int) -> int:
    """Images per forward pass for a group of ``group`` equal-shape requests. On a CPU one at a time: there a
    batched pass costs more per image, not less (256 px, one thread: 169 ms at 1, 215 ms at 4, 275 ms at 8 —
    the activations of a batch leave the cache; ``bench/style.py``); on an accelerator the whole group."""
    return 1 if device.type == "cpu" else group


def apply(net: StyleNet, contents: Sequence[Tensor], weights: Tensor, strength: float
          ) -> tuple[list[Tensor], list[float], list[int]]:
    """Stylise (1, 3, h, w) images, those of equal shape served together (in passes of :func:`forward_chunk`
    images) → (images, seconds each, sizes of the groups they were served in)."""
    out: list[Tensor | None] = [None] * len(contents)
    seconds = [0.0] * len(contents)
    sizes = [1] * len(contents)
    shapes: dict[tuple[int, ...], list[int]] = {}
    for k, c in enumerate(contents):
        shapes.setdefault(tuple(c.shape), []).append(k)
    device = next(net.parameters()).device
    weights = weights.to(device)
    for group in shapes.values():
        step = forward_chunk(device, len(group))
        for first in range(0, len(group), step):
            indices = group[first:first + step]
            x = torch.cat([contents[k] for k in indices]).to(device)
            start = time.perf_counter()
            with torch.no_grad():
                y = net(x, weights)
            y = strength * y + (1 - strength) * x
            elapsed = (time.perf_counter() - start) / len(indices)
            for j, k in enumerate(indices):
                out[k], seconds[k], sizes[k] = y[j:j + 1], elapsed, len(group)
    return [o for o in out if o is not None], seconds, sizes


@technique(name="stylize", title="Fast style transfer (feed-forward)", family="synthesis", params=StylizeParams,
           page="fast_style",
           inputs=("content",), order=72, batched=True,
           reference="Johnson, Alahi & Fei-Fei 2016; Dumoulin, Shlens & Kudlur 2017", outputs=(
               Image("content", "content"),
               Image("result", "fast · {seconds:.3f} s forward · {styles}", role="primary"),
               Label("network", "the style network, and what its losses were measured with"),
               Label("styles", "the styles blended, with their weights"),
               Scalar("seconds", "this image's share of its batch's forward pass", "s"),
               Scalar("batch", "images served in the same forward pass", integer=True),
               Scalar("strength", "share of the stylised image mixed with the content")))
def stylize(loaded: LoadedModel, inputs: Sequence[Inputs], targets: Sequence[int | None],
            params: StylizeParams = StylizeParams(), progress: Progress | None = None) -> list[Synthesis]:
    """One result per request: ``result`` (longer side ``size``) and ``content`` as used; scalars ``seconds``
    (this image's share of its batch's forward pass) and ``batch``."""
    net, names, perceptual = load_stylenet(CHECKPOINT, loaded.device)
    weights = blend_vector(params.style, params.blend, names)
    contents = [fit(one["content"], params.size) for one in inputs]
    results, seconds, sizes = apply(net, contents, weights, params.strength)
    if progress is not None:
        progress(1, 1, results[0][0])  # the preview: (3, h, w)
    labels: dict[str, Any] = {"network": f"fast style network ({len(names)} styles; losses measured on "
                                         f"{perceptual or 'an unnamed network'})",
                              "styles": describe_blend(weights, names)}
    return [synthesis({"result": r, "content": c}, {},
                      {"seconds": round(s, 5), "batch": float(b), "strength": params.strength}, labels)
            for r, c, s, b in zip(results, contents, seconds, sizes, strict=True)]
