"""How faithful is an attribution technique? Pointing game, deletion/insertion and model randomisation
over held-out built-in images, as curves for charts (Zhang et al. 2016; Petsiuk et al. 2018;
Adebayo et al. 2018)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from convlens import faithfulness, registry
from convlens.builtin.dataset import HELDOUT_SEED
from convlens.models import LoadedModel
from convlens.outputs import Item, Scalar, Series
from convlens.registry import seed_field, technique
from convlens.results import Corpus, Progress
from convlens.schema import SchemaError
from convlens.techniques.corpus.work import SYNC_MAX_FAITHFULNESS_IMAGES

MAX_IMAGES = 500


@dataclass(frozen=True)
class FaithfulnessParams:
    """``technique``: the attribution technique measured; ``n`` held-out images (stream ``seed``) for the
    pointing game and the curves, ``randomisation_images`` of them for the (costlier) randomisation."""

    technique: str = "gradcam"
    n: int = 50
    steps: int = 16
    baseline: Literal["blur", "zero"] = "blur"
    randomisation_images: int = 8
    seed: int = seed_field(HELDOUT_SEED)

    def check(self) -> None:
        """SchemaError naming the first param out of range (checked before a job is started for it)."""
        attribution = [s.name for s in registry.of_family("attribution")]
        if self.technique not in attribution:
            raise SchemaError("params.technique", f"must be one of {', '.join(attribution)}, got {self.technique!r}")
        for name, value, top in (("n", self.n, MAX_IMAGES), ("steps", self.steps, 100),
                                 ("randomisation_images", self.randomisation_images, 64)):
            if not 1 <= value <= top:
                raise SchemaError(f"params.{name}", f"must be in [1, {top}], got {value}")

    def runs_long(self) -> bool:
        return self.n > SYNC_MAX_FAITHFULNESS_IMAGES


@technique(name="faithfulness", title="Faithfulness", family="corpus", params=FaithfulnessParams, inputs=(),
           page="faithfulness",
           order=90, reference="Zhang et al. 2016; Petsiuk et al. 2018; Adebayo et al. 2018", outputs=(
               Scalar("pointing_game", "share of images whose map peaks inside the object (higher is better)",
                      role="headline"),
               Scalar("deletion_auc", "area under the deletion curve (lower is better)", role="headline"),
               Scalar("insertion_auc", "area under the insertion curve (higher is better)", role="headline"),
               Scalar("accuracy", "the model's accuracy on the same images"),
               Scalar("randomised_similarity", "rank correlation with the original map once every layer is "
                                               "randomised (lower is better)"),
               Scalar("images", "held-out images measured", integer=True),
               Series("deletion", "class probability vs share of pixels deleted"),
               Series("insertion", "class probability vs share of pixels inserted"),
               Series("randomisation", "rank correlation with the original map vs layers randomised, from the top"),
               Item("step", "layers randomised"), Item("layer", "the layer randomised last"),
               Item("similarity", "rank correlation with the original map")))
def faithfulness_curves(loaded: LoadedModel, inputs: Mapping[str, Tensor],
                        params: FaithfulnessParams = FaithfulnessParams(), progress: Progress | None = None) -> Corpus:
    """series: ``deletion`` and ``insertion`` (probability vs share of pixels), ``randomisation``
    (similarity vs layers randomised, top first; ``items`` name the layers); scalars: the AUCs, the
    pointing game and the model's accuracy on the same images."""
    params.check()
    if loaded.name != "builtin":
        raise SchemaError("model", "faithfulness is measured against the built-in dataset's object masks: "
                                   "use the builtin model")
    # progress in maps computed: one per image for the pointing game and the curves, one per randomised image for
    # the original and for each randomisation step (its share of the time is large: ~100 maps on the built-in)
    per_step = params.randomisation_images
    total = 2 * params.n + per_step * (len(faithfulness.randomised_layers(loaded.net)) + 1)
    report = (lambda done: progress(done, total, None)) if progress is not None else (lambda done: None)
    pointing = faithfulness.pointing_game(loaded, params.technique, n=params.n, seed=params.seed,
                                          callback=lambda done, _n: report(done))
    curves = faithfulness.deletion_insertion_game(loaded, params.technique, n=params.n, seed=params.seed,
                                                  steps=params.steps, baseline=params.baseline,
                                                  callback=lambda done, _n: report(params.n + done))
    randomised = faithfulness.randomisation_check(
        loaded, params.technique, n=params.randomisation_images, seed=params.seed,
        callback=lambda done, _layers: report(2 * params.n + per_step * (done + 1)))
    report(total)
    steps = [float(k) for k in range(len(randomised.similarity))]
    return Corpus(
        series={"deletion": (curves.fractions, curves.deletion), "insertion": (curves.fractions, curves.insertion),
                "randomisation": (steps, randomised.similarity)},
        items=[{"step": k, "layer": layer, "similarity": s}
               for k, (layer, s) in enumerate(zip(["(none)", *randomised.layers], randomised.similarity,
                                                  strict=True))],
        scalars={"deletion_auc": curves.deletion_auc, "insertion_auc": curves.insertion_auc,
                 "pointing_game": pointing.score, "accuracy": pointing.accuracy,
                 "randomised_similarity": randomised.similarity[-1], "images": float(params.n)},
    )
