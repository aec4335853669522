"""The pointing game, by hand and on the built-in model (where the maps must point at the object)."""

from __future__ import annotations

import math

import pytest
import torch

from convlens.builtin.dataset import render_batch
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
    [("gradcam", 0.90, 0.95), ("vanilla", 0.80, 0.93), ("guided", 0.78, 0.95)],  # guided: no target; measured 0.795
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


class Lookup(torch.nn.Module):
    """Class 1's logit is 10 × the mean of pixels (0, 0) and (0, 1) of channel 0; class 0's is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale * x[:, 0, 0, :2].mean(1)
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_deletion_and_insertion_by_hand() -> None:
    from convlens.faithfulness import deletion_insertion

    x = torch.ones(1, 3, 2, 2)
    good = torch.tensor([[[1.0, 0.9], [0.1, 0.0]]])  # ranks the two pixels the class depends on first
    bad = 1 - good
    target = torch.tensor([1])
    g = deletion_insertion(Lookup(), x, good, target, steps=4, baseline="zero")
    b = deletion_insertion(Lookup(), x, bad, target, steps=4, baseline="zero")
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # Deleting 1 of 4 pixels (the best) halves the logit: 10 → 5; 2 of 4 deletes both.
    assert g.deletion[0].tolist() == pytest.approx([sig(10), sig(5), sig(0), sig(0), sig(0)], abs=1e-6)
    assert g.insertion[0].tolist() == pytest.approx([sig(0), sig(5), sig(10), sig(10), sig(10)], abs=1e-6)
    assert b.deletion[0].tolist() == pytest.approx([sig(10), sig(10), sig(10), sig(5), sig(0)], abs=1e-6)
    assert float(g.deletion_auc[0]) < float(b.deletion_auc[0])
    assert float(g.insertion_auc[0]) > float(b.insertion_auc[0])
    assert g.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_grad_cam_beats_a_shuffled_map_on_insertion_and_deletion(builtin) -> None:  # type: ignore[no-untyped-def]
    from convlens.faithfulness import deletion_insertion, deletion_insertion_game

    game = deletion_insertion_game(builtin, "gradcam", n=30, steps=8)
    imgs, _masks, labels = render_batch(1, 30)
    x = builtin.preprocessing.normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    random_maps = torch.rand(30, 64, 64, generator=torch.Generator().manual_seed(0))
    chance = deletion_insertion(builtin.net, x, random_maps, torch.from_numpy(labels), steps=8)
    assert game.insertion_auc > float(chance.insertion_auc.mean()) + 0.1
    assert game.deletion_auc < float(chance.deletion_auc.mean()) - 0.1
    assert len(game.deletion) == len(game.fractions) == 9 and game.deletion[0] > game.deletion[-1]


def test_randomisation_check_on_a_copy(builtin) -> None:  # type: ignore[no-untyped-def]
    from convlens.faithfulness import randomisation_check

    before = {k: v.clone() for k, v in builtin.net.state_dict().items()}
    r = randomisation_check(builtin, "gradcam", n=6)
    assert all(torch.equal(before[k], v) for k, v in builtin.net.state_dict().items())
    assert r.layers[0] == "classifier" and r.layers[-1] == "features.0" and len(r.similarity) == len(r.layers) + 1
    assert r.similarity[0] == 1.0 and r.similarity[-1] < 0.5  # Grad-CAM follows the weights
    guided = randomisation_check(builtin, "guided", n=6)
    assert guided.similarity[1] > 0.9 > guided.similarity[-1]  # guided ignores the top layer (Adebayo et al.)


def test_spearman_by_hand() -> None:
    from convlens.faithfulness import spearman

    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert spearman(a, a * 10).tolist() == pytest.approx([1.0])
    assert spearman(a, -a).tolist() == pytest.approx([-1.0])
