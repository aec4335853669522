"""Adaptive window refinement for occlusion: the lattice by hand, exact interpolation of bilinear scores, fewer
windows where the map is flat, the guard finishing an image exactly, and the measured reduced-precision choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens.schema import SchemaError
from convlens.techniques.attribution import guard, refinement
from convlens.techniques.attribution import occlusion as occlusion_module
from convlens.techniques.attribution.occlusion import OcclusionParams, occlusion


def test_the_coarse_lattice_keeps_every_second_position_and_the_last() -> None:
    assert refinement.coarse_indices(5) == [0, 2, 4]
    assert refinement.coarse_indices(6) == [0, 2, 4, 5]
    assert refinement.coarse_indices(1) == [0]
    assert refinement.cells(3, 1) == [(0, 2, 0, 0)]


def test_interpolation_reproduces_bilinear_scores_exactly() -> None:
    r, c = torch.meshgrid(torch.arange(7.0), torch.arange(6.0), indexing="ij")
    truth = (2 * r - 3 * c + 0.5 * r * c)[..., None]  # bilinear in each cell
    known = torch.zeros(7, 6, dtype=torch.bool)
    for p in refinement.coarse(7, 6):
        known[p] = True
    guess = refinement.interpolate(torch.where(known[..., None], truth, torch.zeros(())), known)
    torch.testing.assert_close(guess, truth)


def test_only_cells_whose_corners_differ_are_refined() -> None:
    score = torch.zeros(5, 5)
    score[4, 4] = 1.0  # one coarse corner stands out: only the bottom-right cell (rows 2-4, columns 2-4)
    assert refinement.to_refine(score, 0.5) == [(r, c) for r in range(2, 5) for c in range(2, 5)]
    assert refinement.to_refine(score, 1.0) == []


def test_refine_runs_fewer_windows_on_a_flat_map_and_recovers_it() -> None:
    truth = torch.zeros(9, 9, 1)
    truth[6:, 6:] = 1.0  # one corner of the map changes, the rest is flat
    ran: list[tuple[int, int]] = []

    def run(positions: list[tuple[int, int]]) -> torch.Tensor:
        ran.extend(positions)
        return torch.stack([truth[p] for p in positions])

    out, info = refinement.refine(9, 9, 0.1, run, lambda v: v[..., 0])
    assert info["refined"] == 1.0 and info["windows_run"] == len(ran) == len(set(ran)) < 81
    torch.testing.assert_close(out, truth)


def test_the_guard_finishes_exactly_when_the_sample_disagrees() -> None:
    truth = torch.rand(9, 9, 1, generator=torch.Generator().manual_seed(0))  # noise: nothing interpolates
    out, info = refinement.refine(9, 9, 1.0, lambda ps: torch.stack([truth[p] for p in ps]), lambda v: v[..., 0])
    assert info == {"windows_run": 81.0, "refined": 0.0}
    torch.testing.assert_close(out, truth)


def test_expected_correlation_matches_the_measured_one() -> None:
    """The guard's estimate on random errors is within a few thousandths of the correlation they cause."""
    g = torch.Generator().manual_seed(1)
    score = torch.randn(400, generator=g)
    errors = 0.2 * torch.randn(400, generator=g)
    measured = float(torch.corrcoef(torch.stack([score, score + errors]))[0, 1])
    assert guard.correlation(score, errors, 400, bound=False) == pytest.approx(measured, abs=0.01)


class Spot(nn.Module):
    """The target's logit is the mean of a 6×6 patch at the image's corner: occluding elsewhere changes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spot = x[:, :, 26:, 26:].mean((1, 2, 3))
        return torch.stack([4 * spot, torch.zeros_like(spot)], 1)


def test_occlusion_with_refinement_matches_the_full_map_with_fewer_windows() -> None:
    x = torch.ones(1, 3, 32, 32)
    exact = occlusion(Spot(), x, 0, OcclusionParams(window=8, stride=2, fill="zero", incremental=False))
    refined = occlusion(Spot(), x, 0, OcclusionParams(window=8, stride=2, fill="zero", incremental=False,
                                                      refinement=0.05))
    assert refined.scalars["refined"] == 1.0
    assert refined.scalars["windows_run"] < 0.6 * refined.scalars["windows"]
    # interpolation is exact where the drop is bilinear in the window's position, close elsewhere
    pair = torch.stack([refined.raw.flatten(), exact.raw.flatten()])
    assert float(torch.corrcoef(pair)[0, 1]) >= 0.99
    assert float((pair[0] - pair[1]).abs().max()) <= 0.05 * float(exact.raw.max())


def test_refinement_needs_a_stride_of_at_most_half_the_window() -> None:
    with pytest.raises(SchemaError) as info:
        occlusion(Spot(), torch.ones(1, 3, 32, 32), 0, OcclusionParams(window=8, stride=5, refinement=0.1))
    assert info.value.field == "params.refinement"


@pytest.mark.parametrize(("bf16_seconds", "chosen"), [(0.5, torch.bfloat16), (1.0, torch.float32)])
def test_reduced_precision_is_chosen_only_where_measured_faster(monkeypatch: pytest.MonkeyPatch,
                                                                bf16_seconds: float, chosen: torch.dtype) -> None:
    monkeypatch.setattr(occlusion_module, "_FAST_REDUCED", {})
    monkeypatch.setattr(occlusion_module, "reduced_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(occlusion_module, "_conv_seconds",
                        lambda dtype: bf16_seconds if dtype == torch.bfloat16 else 1.0)
    assert occlusion_module.fast_reduced_dtype(torch.device("cpu")) == chosen
