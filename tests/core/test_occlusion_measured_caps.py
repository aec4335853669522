"""Occlusion with boxes capped per map size by measurement (``dropped_energy``), and the guard that keeps it."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convlens.pipeline import parse_params
from convlens.schema import SchemaError
from convlens.techniques.attribution import guard, incremental
from convlens.techniques.attribution import occlusion as occlusion_module
from convlens.techniques.attribution.occlusion import OcclusionParams, occlusion


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_dropped_share_by_hand() -> None:
    # energies 1, 2, 4, 2, 1 on positions 2..6 of a side of 10, centred at 4.5 (position 4 holds the 4):
    # a span of 1 keeps 4 of 10, of 3 keeps 8, of 5 keeps all
    profile = torch.tensor([[1.0, 2.0, 4.0, 2.0, 1.0]])
    dropped = incremental._dropped(profile, [2], 10, torch.tensor([4.5]))
    assert dropped.shape == (1, 10)
    torch.testing.assert_close(dropped[0, [0, 2, 4]], torch.tensor([0.6, 0.2, 0.0]))
    assert incremental._smallest(dropped, 0.25) == 3 and incremental._smallest(dropped, 0.0) == 5
    # at the border the span moves inside the map (like every cap), so it still holds what it can
    border = incremental._dropped(torch.tensor([[4.0, 1.0]]), [0], 10, torch.tensor([0.0]))
    torch.testing.assert_close(border[0, :2], torch.tensor([0.2, 0.0]))


def test_the_chi2_quantile_is_close_to_the_exact_one() -> None:
    from scipy.stats import chi2  # a test dependency of the check only

    for dof in (8, 12, 30):
        assert guard.chi2_lower_quantile(dof) == pytest.approx(chi2.ppf(0.05, dof), rel=0.01)
    assert guard.chi2_lower_quantile(3) < chi2.ppf(0.05, 3)  # below: a larger bound on the errors, not a smaller


def test_the_bound_is_below_the_estimate_and_the_estimate_matches_the_measured_correlation() -> None:
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(2000, generator=g)
    errors = 0.15 * torch.randn(2000, generator=g)
    measured = corr(scores + errors, scores)
    point = guard.correlation(scores + errors, errors[:10], 2000, bound=False)
    assert guard.correlation(scores + errors, errors, 2000, bound=False) == pytest.approx(measured, abs=0.003)
    assert guard.correlation(scores + errors, errors[:10], 2000) < point
    assert guard.correlation(scores, errors[:0], 10) == 0.0  # nothing sampled: nothing trusted
    assert guard.correlation(scores, errors[:5], 0) == 1.0  # nothing cheap: exact


def test_the_stratified_sample_draws_one_from_each_run_and_is_reproducible() -> None:
    items = list(range(100, 169))
    sample = guard.stratified(items, 10)
    bounds = [round(j * len(items) / 10) for j in range(11)]
    assert [items[lo] <= v <= items[hi - 1] for v, lo, hi in zip(sample, bounds[:-1], bounds[1:], strict=True)] \
        == [True] * 10
    assert sample == guard.stratified(items, 10)  # the same map on every run
    assert guard.stratified(items[:4], 10) == items[:4]
    # over many lattices, every position is drawn about equally often: no region is left out
    counts = torch.zeros(40)
    for n in range(40, 80):
        for v in guard.stratified(list(range(n)), 10):
            if v < 40:
                counts[v] += 1
    assert counts.min() > 0


def resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    return net, torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(5))


PARAMS = {"window": 16, "stride": 8, "fill": "zero"}


def test_measured_caps_keep_the_map_and_do_less_work() -> None:
    net, x = resnet()
    occlusion_module._MEASURED.clear()
    with FlopCounterMode(display=False) as exact_flops:
        exact = occlusion(net, x, None, OcclusionParams(**PARAMS))  # type: ignore[arg-type]
    with FlopCounterMode(display=False) as capped_flops:
        capped = occlusion(net, x, None, OcclusionParams(dropped_energy=0.005, **PARAMS))  # type: ignore[arg-type]
    assert capped.scalars["approximate"] == 1
    assert 0.99 <= float(capped.scalars["predicted_correlation"]) <= corr(capped.raw, exact.raw)
    assert capped_flops.get_total_flops() < exact_flops.get_total_flops()


def test_caps_are_measured_once_per_model_and_geometry_and_forgotten_when_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = resnet()
    occlusion_module._MEASURED.clear()
    measured = []
    original = occlusion_module._WindowRunner.measure

    def counting(self: occlusion_module._WindowRunner, *args: object) -> object:
        measured.append(1)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(occlusion_module._WindowRunner, "measure", counting)
    params = OcclusionParams(dropped_energy=0.005, **PARAMS)  # type: ignore[arg-type]
    occlusion(net, x, None, params)
    occlusion(net, x.flip(-1), None, params)
    assert len(measured) == 1
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *args: False)
    refused = occlusion(net, x, None, params)
    exact = occlusion(net, x, None, OcclusionParams(**PARAMS))  # type: ignore[arg-type]
    assert refused.scalars["approximate"] == 0 and refused.scalars["predicted_correlation"] == 1
    torch.testing.assert_close(refused.raw, exact.raw)
    occlusion(net, x, None, params)
    assert len(measured) == 2  # the refused caps were forgotten


def test_a_lossy_cap_is_refused_by_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # caps that leave out 10 % of the change energy on each map: a map correlating ~0.95 with the exact one
    net, x = resnet()
    occlusion_module._MEASURED.clear()
    exact = occlusion(net, x, None, OcclusionParams(**PARAMS))  # type: ignore[arg-type]
    lossy = OcclusionParams(dropped_energy=0.1, **PARAMS)  # type: ignore[arg-type]
    guarded = occlusion(net, x, None, lossy)
    assert guarded.scalars["approximate"] == 0
    torch.testing.assert_close(guarded.raw, exact.raw)
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *args: True)  # what the guard refused
    assert corr(occlusion(net, x, None, lossy).raw, exact.raw) < 0.99


@pytest.mark.parametrize(("value", "extra"), [(0.0, {}), (0.5, {}), (0.01, {"approximation": 0.8})])
def test_bad_dropped_energy_names_its_field(value: float, extra: dict[str, float]) -> None:
    net, x = resnet()
    with pytest.raises(SchemaError) as info:
        occlusion(net, x, None, OcclusionParams(dropped_energy=value, **extra, **PARAMS))  # type: ignore[arg-type]
    assert info.value.field == "params.dropped_energy"
    if not extra:
        with pytest.raises(SchemaError) as info:
            parse_params(OcclusionParams, {"dropped_energy": value})
        assert info.value.field == "params.dropped_energy"
