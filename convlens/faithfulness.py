"""Faithfulness of attribution maps, measured against ground-truth object masks.

Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation
Backprop", §5.1): a map scores a hit when its maximum falls inside the object.
The built-in dataset renders every image with its mask, which turns "the map looks
right" into a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from convlens import registry
from convlens.builtin.dataset import HELDOUT_SEED, render_batch
from convlens.models import LoadedModel
from convlens.pipeline import parse_params


def pointing_hits(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """(N, H, W) maps and (N, H, W) bool masks → (N,) bool: is each map's maximum on the object?

    ``tolerance`` (pixels) grows the mask first, as Zhang et al. allow 15 px at 224 px.
    A flat map (no maximum, e.g. all zeros) is a miss. Ties go to the first maximum.
    """
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ")
    n, _, w = maps.shape
    target = masks.bool()
    if tolerance > 0:
        target = F.max_pool2d(target[:, None].float(), 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0] > 0
    flat = maps.reshape(n, -1)
    peak = flat.argmax(dim=1)
    flat_map = flat.amax(dim=1) <= flat.amin(dim=1)
    hit = target.reshape(n, -1)[torch.arange(n), peak]
    return hit & ~flat_map


@dataclass(frozen=True)
class PointingGame:
    method: str
    score: float
    hits: Tensor  # (N,) bool
    accuracy: float  # of the model on the same images, for context


def pointing_game(
    loaded: LoadedModel,
    method: str,
    n: int = 200,
    seed: int = HELDOUT_SEED,
    batch_size: int = 50,
    tolerance: int = 0,
    params: dict[str, object] | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> PointingGame:
    """Pointing game of ``method`` on ``n`` held-out built-in images, explaining the true class."""
    if loaded.name != "builtin":
        raise ValueError("the pointing game needs object masks: it runs on the built-in model and dataset")
    technique = registry.get(method)
    if technique.family != "attribution":
        raise ValueError(f"{method} is not an attribution technique")
    technique_params = parse_params(technique.params, params or {})
    hits, correct = [], 0
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        imgs, masks, labels = render_batch(seed, count, start=start)
        x = loaded.preprocessing.normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
        labels_t = torch.from_numpy(labels).to(loaded.device)
        result = technique.run(loaded.net, x.to(loaded.device), labels_t, technique_params,
                               to_input=loaded.preprocessing.normalize)
        hits.append(pointing_hits(result.map.cpu(), torch.from_numpy(masks), tolerance))
        correct += int((result.logits.argmax(1) == labels_t).sum())
        if callback is not None:
            callback(start + count, n)
    all_hits = torch.cat(hits)
    return PointingGame(method, float(all_hits.float().mean()), all_hits, correct / n)
