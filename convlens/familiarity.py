"""Does an input look like the model's training data? A per-image familiarity score, calibrated on held-out data.

Deep nearest neighbours (Sun, Ming, Zhu & Li 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors"):
an image's features at a few layers are L2-normalised and compared with those of training images (the *bank*);
its similarity to the nearest one, at each layer, is ranked among the same similarities of the model's held-out
images (the empirical CDF: the share of held-out images that are no closer to the training data). The image's
**familiarity** is the lowest of those ranks over the layers, in [0, 1]; the **threshold** is the familiarity that
``accept`` (95 %) of the held-out images reach, so a typical held-out image is *familiar* by construction and an
image less like the training data than 19 held-out images in 20 is not.

Layers: the model's middle and last spatial layers, each pooled to its per-channel mean and standard deviation
(texture statistics), and its CNN code (the layer before the classifier). Measured by ``bench/familiarity.py``
(every score calibrated the same way; share rejected of 27 photographs / 102 crops of them / 30 noise images):
built-in model — energy (logsumexp of the logits) 0.63 / 0.78 / 0.33, max-softmax 0.74 / 0.77 / 0.33, k-NN of the
code alone 0.93 / 0.88 / 0.97, this score 1.00 / 0.96 / 1.00 (flat images: 1.00 with each); fresh held-out images
pass 0.97 (rendered) and 0.93 (drawn), PIL drawings like users make 0.81 (energy: 0.94). digits — energy 0.52 / 0.61 /
0.83, the code alone 0.85 / 0.95 / 1.00, this score 1.00 / 1.00 / 1.00. About 5–10 ms a request on 2 busy cores.

A calibration needs a held-out set the model never trained on: the built-in model's is its generator's stream 1
(stream 0 trains it); a registered model's is named by its folder's ``heldout.json`` (a source this module
knows). Any other model (ImageNet networks, random weights, a folder without one) is *not calibrated*:
:func:`assess` returns nothing for it rather than a made-up threshold. A calibration is computed once per model
and weights file and kept on disk (``<data dir>/.cache/familiarity``); the shipped models' calibrations ship
(``convlens/builtin/familiarity/``), so a fresh clone's first request does not pay for one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlens import hooks
from convlens.models import LoadedModel

VERSION = 1  # bump when the score changes: every cached calibration is then recomputed
ACCEPT = 0.95  # the share of held-out images the threshold accepts
BANK_SIZE = 500  # training images whose features are the bank
HELDOUT_SIZE = 1000  # held-out images the scores are ranked among (at most)
DRAWN_SHARE = 0.3  # the built-in model's bank and held-out images: the share of flat "drawn" scenes
SHIPPED_DIR = Path(__file__).resolve().parent / "builtin" / "familiarity"
NAMES = ("familiarity", "familiarity_threshold", "familiar")  # the scalars an answer carries (registry.py)
_KEPT = "_convlens_familiarity"  # the LoadedModel attribute a calibration (or None: none) is kept in


# ------------------------------------------------------------------------------------------- the score


def pooled_features(net: nn.Module, x: Tensor, layers: Sequence[str],
                    seen: Mapping[str, Tensor] | None = None) -> list[Tensor]:
    """(N, C, H, W) model input → one (N, D) L2-normalised feature matrix per layer: a spatial output (N, C, h, w)
    as its per-channel mean and standard deviation (D = 2C), anything else flattened. ``seen``: the layers'
    outputs of a forward pass on ``x`` already made (:func:`watch`); else one is made here."""
    if seen is None or not all(name in seen and len(seen[name]) == len(x) for name in layers):
        with torch.no_grad(), hooks.capture(net, layers, detach=True) as captured:
            net(x)
        seen = captured.activations
    out = []
    for name in layers:
        a = seen[name].detach().float()
        a = torch.cat([a.mean((2, 3)), a.std((2, 3), unbiased=False)], 1) if a.ndim == 4 else a.flatten(1)
        out.append(F.normalize(a, dim=1))
    return out


def nearest_similarity(z: Tensor, bank: Tensor, chunk: int = 4096) -> Tensor:
    """(N, D) and (M, D) unit rows → (N,) cosine similarity of each row to its nearest bank row (k = 1)."""
    return torch.cat([(z[i:i + chunk] @ bank.T).amax(1) for i in range(0, len(z), chunk)]) if len(z) else \
        z.new_zeros(0)


def rank_among(values: Tensor, sorted_reference: Tensor) -> Tensor:
    """The share of ``sorted_reference`` (ascending) that is ≤ each of ``values``: the empirical CDF, in [0, 1]."""
    return torch.searchsorted(sorted_reference, values.contiguous(), right=True).float() / len(sorted_reference)


def threshold_for(scores: Tensor, accept: float = ACCEPT) -> float:
    """The largest score that at least ``accept`` of ``scores`` reach: the ⌊(1 − accept)·n⌋-th smallest."""
    ordered = scores.flatten().sort().values
    k = min(int(np.floor((1.0 - accept) * len(ordered) + 1e-9)), len(ordered) - 1)
    return float(ordered[k])


@dataclass(frozen=True)
class Calibration:
    """What scoring an image needs: the layers, the bank's features per layer (M, D), the held-out images'
    nearest-bank similarities per layer (sorted ascending), and the threshold accepting ``accept`` of them."""

    layers: tuple[str, ...]
    banks: tuple[Tensor, ...]
    reference: tuple[Tensor, ...]
    threshold: float
    accept: float
    source: str

    @property
    def heldout_size(self) -> int:
        return len(self.reference[0])

    def score(self, features: Sequence[Tensor]) -> Tensor:
        """Per-layer features (N, D) → (N,) familiarity: the lowest rank over the layers."""
        ranks = [rank_among(nearest_similarity(z, bank), ref)
                 for z, bank, ref in zip(features, self.banks, self.reference, strict=True)]
        return torch.stack(ranks).amin(0)


def calibrate(layers: Sequence[str], bank: Sequence[Tensor], heldout: Sequence[Tensor], accept: float = ACCEPT,
              source: str = "") -> Calibration:
    """A calibration from the bank's and the held-out images' features (per layer, unit rows). The bank is
    stored as float16 (half the disk); the held-out similarities are taken against that same stored bank."""
    banks = tuple(b.to(torch.float16).float() for b in bank)
    reference = tuple(nearest_similarity(h, b).sort().values for h, b in zip(heldout, banks, strict=True))
    partial = Calibration(tuple(layers), banks, reference, 0.0, accept, source)
    threshold = threshold_for(partial.score(heldout), accept)
    return Calibration(tuple(layers), banks, reference, threshold, accept, source)


# ------------------------------------------------------------------------------------------- held-out sets


@dataclass(frozen=True)
class HeldOut:
    """Model inputs (normalised, at the model's size): training images for the bank and held-out images."""

    train: Tensor
    heldout: Tensor
    source: str


def _builtin_sets(loaded: LoadedModel) -> HeldOut:
    """Both styles the model trained on (``train.training_tensors``): rendered scenes and, a fifth of them, flat
    "drawn" ones resized like uploads (what users draw first). The bank comes from the training stream, the
    held-out images from stream 1 (its drawn ones far past the index range of its rendered ones)."""
    from convlens.builtin.dataset import HELDOUT_SEED, TRAIN_SEED, render_batch, render_drawn_batch
    from convlens.builtin.train import TrainConfig

    config, size = TrainConfig(), loaded.preprocessing.input_size
    drawn_start = config.n_train + round(config.background_fraction * config.n_train)  # where training draws them

    def inputs(seed: int, n: int, drawn_from: int) -> Tensor:
        n_drawn = round(DRAWN_SHARE * n)
        pixels = np.concatenate([render_batch(seed, n - n_drawn, size)[0],
                                 render_drawn_batch(seed, n_drawn, start=drawn_from, size=size)[0]])
        return loaded.preprocessing.normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0)

    return HeldOut(inputs(TRAIN_SEED, BANK_SIZE, drawn_start), inputs(HELDOUT_SEED, HELDOUT_SIZE, 100_000),
                   f"built-in generator: bank stream {TRAIN_SEED} (training), held-out stream {HELDOUT_SEED}; "
                   f"{DRAWN_SHARE:.0%} drawn scenes in each")


def _sklearn_digits_sets(loaded: LoadedModel, indices: Sequence[int]) -> HeldOut:
    from convlens.builtin.digits import load_images

    images, _labels = load_images()
    held = torch.as_tensor(sorted(indices), dtype=torch.long)
    rest = torch.from_numpy(np.setdiff1d(np.arange(len(images)), held.numpy()))
    train = rest[torch.linspace(0, len(rest) - 1, min(BANK_SIZE, len(rest))).round().long()]
    size = loaded.preprocessing.input_size
    pick = (lambda x: x) if images.shape[-1] == size else \
        (lambda x: F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
    norm = loaded.preprocessing.normalize
    return HeldOut(norm(pick(images[train])), norm(pick(images[held[:HELDOUT_SIZE]])),
                   f"sklearn digits: bank {len(train)} training images, held-out split of heldout.json")


# heldout.json "source" → how to load it (the indices given in the file)
SOURCES: dict[str, Callable[[LoadedModel, Sequence[int]], HeldOut]] = {
    "sklearn.datasets.load_digits": _sklearn_digits_sets}


def heldout_loader(loaded: LoadedModel) -> Callable[[], HeldOut] | None:
    """How to load the model's training and held-out images, or None when it has none (or random weights);
    cheap: nothing is loaded yet."""
    if loaded.weights == "random":
        return None
    if loaded.weights == "builtin" and loaded.name == "builtin":
        return lambda: _builtin_sets(loaded)
    if loaded.card is None:
        return None
    from convlens import zoo

    try:
        split = json.loads((zoo.locate(loaded.name)[0] / "heldout.json").read_text())
        load, indices = SOURCES.get(str(split.get("source", ""))), list(map(int, split["indices"]))
    except (zoo.ManifestError, OSError, ValueError, KeyError, TypeError):
        return None
    return (lambda: load(loaded, indices)) if load is not None and indices else None


def heldout_sets(loaded: LoadedModel) -> HeldOut | None:
    """The model's training and held-out images, or None when it has none."""
    loader = heldout_loader(loaded)
    return loader() if loader is not None else None


# ------------------------------------------------------------------------------------------- once per model


def layers_of(loaded: LoadedModel) -> tuple[str, ...]:
    """The middle and the last spatial layer (Grad-CAM's) and the CNN code, each once."""
    return tuple(dict.fromkeys((loaded.middle_spatial_layer, loaded.default_cam_layer, loaded.code_layer)))


def cache_key(loaded: LoadedModel) -> str:
    """Everything that decides a calibration: the model, its weights file's checksum, layers, preprocessing."""
    from convlens.corpus.codes import weights_digest

    p = loaded.preprocessing
    parts = [VERSION, loaded.name, loaded.weights, weights_digest(loaded), layers_of(loaded), p.input_size,
             p.resize_size, list(p.mean), list(p.std), p.channels, BANK_SIZE, HELDOUT_SIZE, ACCEPT, DRAWN_SHARE]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def save(calibration: Calibration, path: Path) -> None:
    """An ``.npz`` (no pickle), written under a temporary name and renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"layers": list(calibration.layers), "threshold": calibration.threshold, "accept": calibration.accept,
            "source": calibration.source, "version": VERSION}
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
    arrays |= {f"bank{i}": b.to(torch.float16).numpy() for i, b in enumerate(calibration.banks)}
    arrays |= {f"reference{i}": r.numpy() for i, r in enumerate(calibration.reference)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two workers may compute it at once
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def load(path: Path) -> Calibration:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        n = len(meta["layers"])
        banks = tuple(torch.from_numpy(data[f"bank{i}"].astype(np.float32)) for i in range(n))
        reference = tuple(torch.from_numpy(data[f"reference{i}"]) for i in range(n))
    return Calibration(tuple(meta["layers"]), banks, reference, float(meta["threshold"]), float(meta["accept"]),
                       str(meta["source"]))


def compute(loaded: LoadedModel, batch: int = 250) -> Calibration | None:
    """Features of the model's bank and held-out images (batched forward passes on its device) → a calibration."""
    sets = heldout_sets(loaded)
    if sets is None:
        return None
    layers = layers_of(loaded)

    def features(x: Tensor) -> list[Tensor]:
        parts = [pooled_features(loaded.net, x[i:i + batch].to(loaded.device), layers) for i in range(0, len(x),
                                                                                                     batch)]
        return [torch.cat([p[k] for p in parts]).cpu() for k in range(len(layers))]

    return calibrate(layers, features(sets.train), features(sets.heldout), ACCEPT, sets.source)


def cache_path(loaded: LoadedModel) -> Path:
    from convlens.corpus.codes import cache_dir

    return cache_dir("familiarity") / f"{loaded.name}-{cache_key(loaded)}.npz"


def calibration(loaded: LoadedModel) -> Calibration | None:
    """The model's calibration: kept on the model object, else the shipped file, else the cache file, else
    computed now (seconds; then cached). None: the model has no held-out set, so it is not calibrated."""
    kept = vars(loaded).get(_KEPT, loaded)  # the model itself: nothing kept yet
    if kept is not loaded:
        return kept  # type: ignore[no-any-return]
    found: Calibration | None = None
    if heldout_loader(loaded) is not None:
        try:
            name = f"{loaded.name}-{cache_key(loaded)}.npz"
        except ValueError:  # a model without a spatial layer or a code layer: nothing to compare
            name = ""
        for path in (SHIPPED_DIR / name, cache_path(loaded)) if name else ():
            if path.is_file():
                found = load(path)
                break
        else:
            found = compute(loaded) if name else None
            if found is not None:
                save(found, cache_path(loaded))
    object.__setattr__(loaded, _KEPT, found)
    return found


@contextmanager
def watch(loaded: LoadedModel) -> Iterator[dict[str, Tensor]]:
    """Keep the outputs of the layers a calibrated model is scored at during the forward passes in the block (its
    last pass's), so that :func:`assess` needs no pass of its own; nothing for a model without a calibration."""
    cal = calibration(loaded)
    if cal is None:
        yield {}
        return
    with hooks.capture(loaded.net, cal.layers, detach=True) as captured:
        yield captured.activations


def assess(loaded: LoadedModel, x: Tensor, seen: Mapping[str, Tensor] | None = None) -> list[dict[str, float]]:
    """(N, C, H, W) model input → per image ``familiarity`` (in [0, 1]), ``familiarity_threshold`` and ``familiar``
    (1 when familiarity ≥ threshold); an empty dict per image when the model is not calibrated. ``seen``: what
    :func:`watch` kept of a forward pass on ``x``."""
    cal = calibration(loaded)
    if cal is None:
        return [{} for _ in range(len(x))]
    score = cal.score(pooled_features(loaded.net, x.detach(), cal.layers, seen)).tolist()
    return [{"familiarity": s, "familiarity_threshold": cal.threshold, "familiar": float(s >= cal.threshold)}
            for s in score]


def write_shipped(names: Sequence[str] = ("builtin", "digits")) -> list[Path]:
    """Compute the shipped models' calibrations into :data:`SHIPPED_DIR` (run after retraining one)."""
    from convlens.models import load_model

    written = []
    for name in names:
        loaded = load_model(name)
        start = time.perf_counter()
        cal = compute(loaded)
        if cal is None:
            raise ValueError(f"{name} has no held-out set")
        for old in SHIPPED_DIR.glob(f"{name}-*.npz"):
            old.unlink()
        path = SHIPPED_DIR / f"{name}-{cache_key(loaded)}.npz"
        save(cal, path)
        print(f"{name}: {cal.heldout_size} held-out images, threshold {cal.threshold:.4f}, "
              f"{time.perf_counter() - start:.1f} s → {path.name}")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m convlens.familiarity: rewrite the shipped calibrations
    write_shipped()
