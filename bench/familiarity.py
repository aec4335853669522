"""Which "looks like the training data" score separates best? (issue #27, ``convlens.familiarity``)

    PYTHONPATH=. .venv/bin/python bench/familiarity.py [builtin|digits ...]

Each candidate is calibrated the same way, on the model's held-out images (threshold: the score 95 % of them
reach), and then judged on images it was not calibrated on: fresh held-out images (the built-in generator's
stream 1 past the calibration's 1000), the natural photographs on this machine (scikit-learn's and
scikit-image's samples, the dashboard's photos, styles and textures) and random square crops of them, noise
(uniform and Gaussian) and flat images. Candidates: energy (logsumexp of the logits; Liu et al. 2020),
max-softmax (Hendrycks & Gimpel 2017), k-NN (k = 1) of the CNN code alone (Sun et al. 2022), and the shipped
score (k-NN at the middle and last spatial layers' mean/std and at the code, the lowest rank). On the built-in
model also: its drawn held-out scenes and the PIL drawings of ``tests/core/drawn.py`` (what users upload first).
Also times a request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convlens import familiarity as fm
from convlens.corpus.datasets import natural_sources
from convlens.models import LoadedModel, load_model

ROOT = Path(__file__).resolve().parents[1]


def probe_sets(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Named lists of RGB uint8 images that are not the training data."""
    rng = np.random.default_rng(seed)
    photos = [a for _, a in natural_sources()]
    samples = sorted((ROOT / "dashboard" / "samples").glob("*/*.png"))
    photos += [np.asarray(Image.open(p).convert("RGB")) for p in samples]
    crops = []
    for a in photos[:17]:
        h, w = a.shape[:2]
        for _ in range(6):
            s = int(rng.integers(min(h, w) // 4, min(h, w) // 2 + 1))
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crops.append(a[top:top + s, left:left + s])
    noise = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(20)]
    noise += [np.clip(128 + rng.normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(10)]
    flat = [np.full((64, 64, 3), v, np.uint8) for v in (0, 64, 128, 200, 255)]
    flat += [np.tile(np.array(c, np.uint8), (64, 64, 1)) for c in ((255, 0, 0), (0, 0, 255))]
    return {"photos": photos, "photo crops": crops, "noise": noise, "flat": flat}


def inputs(loaded: LoadedModel, arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.cat([loaded.prepare(Image.fromarray(a))[1] for a in arrays])


def candidates(loaded: LoadedModel, cal: fm.Calibration, train: torch.Tensor):  # type: ignore[no-untyped-def]
    code_bank = fm.pooled_features(loaded.net, train, (loaded.code_layer,))[0]

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded.net(x).float()

    return {"energy": lambda x: torch.logsumexp(logits(x), 1),
            "max-softmax": lambda x: torch.softmax(logits(x), 1).amax(1),
            "k-NN code": lambda x: fm.nearest_similarity(fm.pooled_features(loaded.net, x, (loaded.code_layer,))[0],
                                                         code_bank),
            "k-NN mid+last+code (shipped)": lambda x: cal.score(fm.pooled_features(loaded.net, x, cal.layers))}


def measure(name: str) -> None:
    loaded = load_model(name)
    start = time.perf_counter()
    cal = fm.compute(loaded)
    seconds = time.perf_counter() - start
    assert cal is not None
    sets = fm.heldout_sets(loaded)
    assert sets is not None
    probes = {k: inputs(loaded, v) for k, v in probe_sets().items()}
    if name == "builtin":
        from convlens.builtin.dataset import HELDOUT_SEED, render_batch, render_drawn_batch
        from tests.core.drawn import drawn_set

        fresh = render_batch(HELDOUT_SEED, 500, start=fm.HELDOUT_SIZE)[0]
        drawn = render_drawn_batch(HELDOUT_SEED, 200, start=200_000)[0]
        users = torch.cat([loaded.prepare(d.image)[1] for d in drawn_set(123, 20) + drawn_set(999, 20)])
        probes = {"fresh held-out (accepted)": inputs(loaded, list(fresh)),
                  "fresh held-out drawn (accepted)": inputs(loaded, list(drawn)),
                  "PIL drawings, tests/core/drawn.py (accepted)": users, **probes}
    print(f"## {name}: calibration {seconds:.1f} s ({len(sets.train)} bank, {cal.heldout_size} held-out images), "
          f"layers {', '.join(cal.layers)}")
    for label, score in candidates(loaded, cal, sets.train).items():
        threshold = fm.threshold_for(score(sets.heldout))
        row = [f"{label}: held-out accepted {(score(sets.heldout) >= threshold).float().mean():.3f}"]
        for probe, x in probes.items():
            passed = (score(x) >= threshold).float().mean()
            accepted = "(accepted)" in probe
            row.append(f"{probe} {'' if accepted else 'rejected '}{passed if accepted else 1 - passed:.3f}")
        print(" | ".join(row))
    x = probes["photos"][:1]
    fm.assess(loaded, x)
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        fm.assess(loaded, x)
    print(f"per request (one image, assess): {1000 * (time.perf_counter() - start) / runs:.2f} ms")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for model in sys.argv[1:] or ["builtin", "digits"]:
        measure(model)
