"""CNN codes of a batch of images (the embedding service): one float vector per image.

CS231n lecture 12 ("the 4096-d vector right before the classifier"; Krizhevsky et al. 2012, Fig. 4):
the default layer is the model's code layer (the built-in model's ``code``, the pooled features of the
zoo models); any other layer can be asked for, spatial ones pooled over their positions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from convlens.corpus.codes import codes_of
from convlens.models import LoadedModel
from convlens.outputs import Item, Scalar
from convlens.registry import BATCH_INPUT, technique
from convlens.results import Corpus, Progress


@dataclass(frozen=True)
class CodesParams:
    """``pool``: how a spatial layer's (C, h, w) output becomes a C-vector."""

    layer: str | None = None
    pool: Literal["avg", "max"] = "avg"


@technique(name="codes", title="CNN codes", family="corpus", params=CodesParams, inputs=(BATCH_INPUT,),
           layer="optional", default_layer="code", order=10, reference="Krizhevsky et al. 2012; CS231n lecture 12",
           outputs=(Scalar("images", "images coded", integer=True),
                    Scalar("dim", "dimensions of each code", role="headline", integer=True),
                    Item("predicted", "index of the class the model says"), Item("label", "the class the model says")))
def codes(loaded: LoadedModel, inputs: Mapping[str, Tensor], params: CodesParams = CodesParams(),
          progress: Progress | None = None) -> Corpus:
    """``inputs["images"]`` (N, 3, S, S) normalised → vectors (N, D) float32; items: each image's predicted class."""
    x = inputs[BATCH_INPUT]
    layer = params.layer or loaded.code_layer
    vectors, logits = codes_of(loaded, x, layer, params.pool)
    predicted = logits.argmax(dim=1).tolist()
    return Corpus(vectors=vectors, items=[{"predicted": int(p), "label": loaded.label(int(p))} for p in predicted],
                  scalars={"images": float(len(x)), "dim": float(vectors.shape[1])})
