"""Faithfulness of attribution maps: three measurements on held-out built-in images.

- Pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop", §5.1): a map
  scores a hit when its maximum falls inside the object. The built-in dataset renders every image with
  its mask, which turns "the map looks right" into a number.
- Deletion and insertion (Petsiuk, Das & Saenko 2018, "RISE"): does removing the top-ranked pixels
  first kill the class, and does revealing them first restore it?
- Model randomisation (Adebayo et al. 2018): do the maps change when the model's weights do?
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlens import images, registry
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
    hits, correct = [], 0
    for start, count, x, masks, labels in _heldout_batches(loaded, n, seed, batch_size):
        maps = _maps(loaded, loaded.net, method, x, labels, params)
        hits.append(pointing_hits(maps.cpu(), torch.from_numpy(masks), tolerance))
        with torch.no_grad():
            correct += int((loaded.net(x).argmax(1) == labels).sum())
        if callback is not None:
            callback(start + count, n)
    all_hits = torch.cat(hits)
    return PointingGame(method, float(all_hits.float().mean()), all_hits, correct / n)


# ------------------------------------------------------------------------------ deletion and insertion


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of a batch (Petsiuk, Das & Saenko 2018, "RISE", §4.1).

    fractions: (S+1,) share of pixels deleted / inserted, 0 … 1.
    deletion, insertion: (N, S+1) probability of the explained class at each fraction.
    deletion_auc, insertion_auc: (N,) areas under the curves (trapezoid rule). A faithful map has a
    low deletion AUC (the class vanishes as soon as its top pixels go) and a high insertion AUC.
    """

    fractions: Tensor
    deletion: Tensor
    insertion: Tensor
    deletion_auc: Tensor
    insertion_auc: Tensor


def _auc(fractions: Tensor, curves: Tensor) -> Tensor:
    return torch.trapezoid(curves, fractions.to(curves), dim=-1)


def baseline_image(x: Tensor, kind: str = "blur") -> Tensor:
    """What deleted pixels become: ``blur`` (the image blurred with σ = side / 16: removes the
    object's detail without adding a colour it never had — RISE's insertion start) or ``zero``
    (0 in the model's input space, the normalisation mean colour)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return images.gaussian_blur(x, x.shape[-1] / 16)
    raise ValueError(f"baseline must be 'blur' or 'zero', got {kind!r}")


@torch.inference_mode()
def deletion_insertion(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, steps: int = 16,
                       baseline: str = "blur") -> Curves:
    """Rank each image's pixels by ``maps`` (N, H, W); delete (insert) them in ``steps`` equal shares
    from the top, replacing with (revealing over) the baseline, and record the target's probability.

    x: (N, 3, H, W) model input; target: (N,) classes. All 2·(S+1) versions of an image run in one pass.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n, _, h, w = x.shape
    device = next(model.parameters()).device
    x = x.to(device)
    base = baseline_image(x, baseline)
    fractions = torch.linspace(0, 1, steps + 1)
    counts = (fractions * h * w).round().long().tolist()
    order = maps.to(device).flatten(1).argsort(dim=1, descending=True, stable=True)  # (N, HW)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w, device=device).expand(n, -1))
    deletion, insertion = [], []
    for i in range(n):
        shown = torch.stack([(ranks[i] < c).view(1, h, w) for c in counts]).float()  # (S+1, 1, H, W): top pixels
        deleted = x[i] * (1 - shown) + base[i] * shown
        inserted = base[i] * (1 - shown) + x[i] * shown
        probs = torch.softmax(model(torch.cat([deleted, inserted])).float(), dim=1)[:, int(target[i])]
        deletion.append(probs[: steps + 1])
        insertion.append(probs[steps + 1:])
    d, ins = torch.stack(deletion).cpu(), torch.stack(insertion).cpu()
    return Curves(fractions, d, ins, _auc(fractions, d), _auc(fractions, ins))


@dataclass(frozen=True)
class CurveGame:
    """Mean deletion / insertion curves of a method over held-out built-in images."""

    method: str
    fractions: list[float]
    deletion: list[float]
    insertion: list[float]
    deletion_auc: float
    insertion_auc: float


def _heldout_batches(loaded: LoadedModel, n: int, seed: int, batch_size: int):  # type: ignore[no-untyped-def]
    """(start, count, x, masks, labels) over ``n`` held-out built-in images."""
    if loaded.name != "builtin":
        raise ValueError("faithfulness is measured against the built-in dataset's object masks: use the builtin model")
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        imgs, masks, labels = render_batch(seed, count, start=start)
        x = loaded.preprocessing.normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
        yield start, count, x.to(loaded.device), masks, torch.from_numpy(labels).to(loaded.device)


def _maps(loaded: LoadedModel, net: nn.Module, method: str, x: Tensor, labels: Tensor,
          params: dict[str, object] | None) -> Tensor:
    technique = registry.get(method)
    if technique.family != "attribution":
        raise ValueError(f"{method} is not an attribution technique")
    technique_params = parse_params(technique.params, params or {})
    return technique.run(net, x, labels, technique_params, to_input=loaded.preprocessing.normalize).map


def deletion_insertion_game(
    loaded: LoadedModel, method: str, n: int = 100, seed: int = HELDOUT_SEED, steps: int = 16,
    baseline: str = "blur", batch_size: int = 50, params: dict[str, object] | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> CurveGame:
    """Deletion and insertion of ``method``'s maps on ``n`` held-out images, explaining the true class."""
    dels, ins = [], []
    fractions = torch.zeros(0)
    for start, count, x, _masks, labels in _heldout_batches(loaded, n, seed, batch_size):
        maps = _maps(loaded, loaded.net, method, x, labels, params)
        curves = deletion_insertion(loaded.net, x, maps, labels, steps, baseline)
        dels.append(curves.deletion)
        ins.append(curves.insertion)
        fractions = curves.fractions
        if callback is not None:
            callback(start + count, n)
    d, i = torch.cat(dels).mean(0), torch.cat(ins).mean(0)
    return CurveGame(method, fractions.tolist(), d.tolist(), i.tolist(), float(_auc(fractions, d)),
                     float(_auc(fractions, i)))


# ------------------------------------------------------------------------------ model randomisation


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of (N, ...) tensors (ties broken by position)."""
    def ranks(t: Tensor) -> Tensor:
        flat = t.flatten(1).float()
        return flat.argsort(dim=1, stable=True).argsort(dim=1, stable=True).float()

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


@dataclass(frozen=True)
class Randomisation:
    """Cascading model randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", §3).

    layers: the parameterised layers, top (logits) first; similarity[k]: mean Spearman correlation of
    the maps after randomising ``layers[:k]`` with the original maps (similarity[0] = 1). A method
    that explains the model, not the image, loses its similarity as layers are randomised.
    """

    method: str
    layers: list[str]
    similarity: list[float]


def randomised_layers(net: nn.Module) -> list[str]:
    """The modules :func:`randomisation_check` randomises, in its order: those with weights of their own, top down."""
    return [name for name, m in reversed(list(net.named_modules()))
            if name and any(True for _ in m.parameters(recurse=False))]


def randomisation_check(
    loaded: LoadedModel, method: str, n: int = 8, seed: int = HELDOUT_SEED,
    params: dict[str, object] | None = None, callback: Callable[[int, int], None] | None = None,
) -> Randomisation:
    """Randomise the model's layers from the top down, one more each step, on a copy (the caller's
    model is never touched), and compare ``method``'s maps with the original ones."""
    [(_, _, x, _, labels)] = list(_heldout_batches(loaded, n, seed, n))
    net = copy.deepcopy(loaded.net)
    layers = randomised_layers(net)
    original = _maps(loaded, net, method, x, labels, params)
    similarity = [1.0]
    generator = torch.Generator().manual_seed(seed)
    for k, name in enumerate(layers, start=1):
        for p in net.get_submodule(name).parameters(recurse=False):
            p.data = torch.randn(p.shape, generator=generator).to(p) * p.detach().std().clamp_min(1e-3)
        similarity.append(float(spearman(_maps(loaded, net, method, x, labels, params), original).mean()))
        if callback is not None:
            callback(k, len(layers))
    return Randomisation(method, layers, similarity)
