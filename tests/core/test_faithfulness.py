"""The pointing game, by hand and on the built-in model (where the maps must point at the object)."""

from __future__ import annotations

import pytest
import torch

from convlens.faithfulness import pointing_game, pointing_hits
from convlens.models import load_model


def test_pointing_hits_by_hand() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[0, 1, 1] = 1.0  # inside the mask
    maps[1, 3, 3] = 1.0  # outside, two pixels from the mask's corner (diagonally)
    maps[2] = 0.7  # flat: no maximum at all
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, 0:2, 0:2] = True
    assert pointing_hits(maps, masks).tolist() == [True, False, False]
    assert pointing_hits(maps, masks, tolerance=1).tolist() == [True, False, False]
    assert pointing_hits(maps, masks, tolerance=2).tolist() == [True, True, False]


def test_pointing_hits_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ"):
        pointing_hits(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool))


@pytest.fixture(scope="module")
def builtin():  # type: ignore[no-untyped-def]
    return load_model("builtin")


# Measured on the committed model (see the model card): strict Grad-CAM / vanilla / guided 0.915 / 0.81 / 0.865,
# with 2 px of slack 0.975 / 0.955 / 0.995. Chance is the mean mask area, about 0.18. The strict floors of
# Grad-CAM and vanilla are the foundation issue's targets (0.90 and 0.80).
@pytest.mark.parametrize(
    ("method", "strict_floor", "tolerant_floor"),
    [("gradcam", 0.90, 0.95), ("vanilla", 0.80, 0.93), ("guided", 0.80, 0.95)],
)
def test_maps_of_the_builtin_model_point_at_the_object(builtin, method: str, strict_floor: float,  # type: ignore[no-untyped-def]
                                                       tolerant_floor: float) -> None:
    strict = pointing_game(builtin, method, n=200)
    assert strict.hits.shape == (200,)
    assert strict.score >= strict_floor, f"{method} strict pointing game {strict.score:.3f} < {strict_floor}"
    tolerant = pointing_game(builtin, method, n=200, tolerance=2)
    assert tolerant.score >= tolerant_floor, f"{method} pointing game (2 px) {tolerant.score:.3f} < {tolerant_floor}"
    assert strict.accuracy >= 0.95


def test_pointing_game_generalises_to_an_unseen_seed(builtin) -> None:  # type: ignore[no-untyped-def]
    assert pointing_game(builtin, "gradcam", n=100, seed=12345).score >= 0.90  # measured 0.98 (seed 777: 0.96)
    assert pointing_game(builtin, "vanilla", n=100, seed=12345).score >= 0.78  # measured 0.85 (seed 777: 0.79)


def test_a_randomised_model_points_worse(builtin) -> None:  # type: ignore[no-untyped-def]
    """Model-randomisation sanity check (Adebayo et al. 2018): the score must depend on what was learned."""
    torch.manual_seed(0)
    random_model = load_model("builtin", weights="random")
    random_model.name = "builtin"  # same dataset, untrained weights
    trained = pointing_game(builtin, "gradcam", n=100).score
    untrained = pointing_game(random_model, "gradcam", n=100).score  # measured 0.32 vs 0.91
    assert untrained < trained - 0.3


def test_pointing_game_needs_masks() -> None:
    with pytest.raises(ValueError, match="masks"):
        pointing_game(load_model("alexnet", weights="random"), "gradcam", n=2)
