"""A model's robustness curve measured over a named dataset (Szegedy et al. 2014; Carlini & Wagner 2017 on
reporting a curve, not one budget): ``n`` of its images, each attacked towards a seeded random class other than the
model's prediction within each L∞ budget; the share fooled within each budget. The curve is kept under the data
dir by the weights' SHA-256, so later fooling answers on the same weights carry it (:mod:`robustness`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from convlens import images as imaging
from convlens.corpus import datasets as store
from convlens.models import LoadedModel
from convlens.outputs import Scalar, Series
from convlens.registry import bounded, seed_field, technique
from convlens.results import Cancelled, Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import OverADataset
from convlens.techniques.synthesis import robustness
from convlens.techniques.synthesis.common import predict, square

MAX_IMAGES = 200
SYNC_MAX_IMAGES = 2  # each image is a few seconds (one attack per budget): more runs as a job
TARGETS = "a seeded random other class than the model's prediction"


@dataclass(frozen=True)
class FoolingCurveParams(OverADataset):
    """``n`` images of ``dataset`` (a seeded random sample), each attacked within each of ``budgets`` (/255) for
    ``steps`` steps towards a seeded random class other than the model's prediction."""

    dataset: str = ""
    n: int = bounded(30, 1, MAX_IMAGES)
    budgets: tuple[float, ...] = bounded((8.0, 16.0, 32.0), 0.5, 64.0)
    steps: int = bounded(100, 1, 500)
    seed: int = seed_field()

    def runs_long(self) -> bool:
        store.open_dataset(self.dataset)  # a missing dataset is named before a job is started for it
        return self.n > SYNC_MAX_IMAGES


def pictures_of(loaded: LoadedModel, ds: store.Dataset, n: int, seed: int) -> Tensor:
    """(n, 3, S, S) in [0, 1]: a seeded random sample of ``ds``, each its centred square at the input size."""
    chosen = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    size = loaded.preprocessing.input_size
    return torch.cat([square(imaging.to_tensor(ds.image(i).convert("RGB")), size) for i in chosen])


@technique(name="fooling_curve", title="Robustness curve", family="corpus", params=FoolingCurveParams, inputs=(),
           page="fooling", endpoint="dataset", order=95, reference="Szegedy et al. 2014; Carlini & Wagner 2017",
           outputs=(Series("robustness", "share of the dataset's images fooled within each L∞ budget", unit="/255"),
                    Scalar("robustness_images", "images the robustness curve was measured on", integer=True),
                    Scalar("seconds", "time the measurement took", "s"),
                    Scalar("kept", "1 when the curve was kept for later fooling answers on these weights",
                           integer=True)))
def fooling_curve(loaded: LoadedModel, inputs: Mapping[str, Tensor],
                  params: FoolingCurveParams = FoolingCurveParams(), progress: Progress | None = None) -> Corpus:
    """series: ``robustness`` (budget /255 → share fooled, a step function from 0); scalars: the images measured
    (fewer when cancelled: such a partial curve is not kept), the seconds, whether it was kept."""
    if not params.budgets:
        raise SchemaError("params.budgets", "must name at least one budget")
    ds = store.open_dataset(params.dataset)
    if len(ds) == 0:
        raise SchemaError("params.dataset", f"{params.dataset!r} has no images")
    start = time.perf_counter()
    x = pictures_of(loaded, ds, min(params.n, len(ds)), params.seed)
    said = [predict(loaded, x[i:i + 1].to(loaded.device))[0] for i in range(len(x))]
    found = robustness.measure_curve(loaded, x, said, params.budgets, params.steps, progress, params.seed)
    if not found:
        raise Cancelled("before the first image was measured")
    largest = max(params.budgets)
    curve = robustness.from_smallest(found, largest, TARGETS)
    kept = len(found) == len(x) and robustness.keep_measured(loaded, found, largest, TARGETS, params.steps) is not None
    return Corpus(series={"robustness": curve.series()},
                  scalars={"robustness_images": float(curve.images), "seconds": time.perf_counter() - start,
                           "kept": float(kept)})
