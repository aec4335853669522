"""The Fooling page's defaults fool (issue #27): with no target the attack aims for the class easiest to reach
(DeepFool's first-order distance, checked by hand on a linear model), the default budget fools every built-in sample
scene, and the result carries the model's measured robustness curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from convlens import registry
from convlens.images import to_tensor
from convlens.models import LoadedModel, Preprocessing, load_model
from convlens.techniques.synthesis import robustness
from convlens.techniques.synthesis.fooling import FoolingParams, easiest_target

SAMPLES = Path(__file__).resolve().parents[2] / "dashboard" / "samples"


def linear() -> LoadedModel:
    """logits = W · x + b over a (1, 3, 2, 2) image (identity normalisation): gaps and gradients known by hand.
    Class b reads one pixel (‖∇(a − b)‖₁ = 1), class c all twelve (‖∇(a − c)‖₁ = 12)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, bias=True))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([4.0, 3.0, -3.0]))
        net[1].weight[1, 0] = 1.0
        net[1].weight[2] = 1.0
    return LoadedModel("linear", net.eval().requires_grad_(False), ("a", "b", "c"),
                       Preprocessing(2, 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "random")


def test_no_target_aims_for_the_class_nearest_to_first_order_not_the_runner_up() -> None:
    loaded = linear()
    x = torch.full((1, 3, 2, 2), 0.5)
    # logits: a 4, b 3 + 0.5 = 3.5 (the runner-up), c −3 + 12 · 0.5 = 3; L∞ distances gap / ‖∇gap‖₁:
    # b 0.5 / 1 = 0.5, c 1 / 12 ≈ 0.083 — c is nearer, and within the 64/255 ≈ 0.25 budget
    assert loaded.net(x)[0].tolist() == [4.0, 3.5, 3.0]
    assert easiest_target(loaded, x) == 2
    spec = registry.get("fooling")
    result = spec.run(loaded, {"image": x[0]}, None, spec.params(epsilon=64.0, lr=8.0, steps=40))
    assert result.scalars["target"] == 2.0 and result.scalars["easiest"] == 1.0 and result.scalars["fooled"] == 1.0
    assert result.scalars["linf_255"] <= 1 / 12 * 255 + 1.0  # the smallest change is the linear distance
    chosen = spec.run(loaded, {"image": x[0]}, 1, spec.params(epsilon=64.0, lr=8.0, steps=40))
    assert chosen.scalars["target"] == 1.0 and chosen.scalars["easiest"] == 0.0


@pytest.fixture(scope="module")
def builtin() -> LoadedModel:
    torch.set_num_threads(1)
    return load_model("builtin")


@pytest.mark.parametrize("sample", ["checkerboard", "horizontal_stripes", "vertical_stripes"])
def test_the_default_run_fools_the_built_in_model(builtin: LoadedModel, sample: str) -> None:
    """checkerboard: the page's default sample; the stripes: the scenes whose runner-up class the attack cannot reach
    within the budget (the runner-up of horizontal stripes is vertical stripes, out of reach at 16/255)."""
    spec = registry.get("fooling")
    image = to_tensor(Image.open(SAMPLES / f"{sample}.png").convert("RGB"))
    result = spec.run(builtin, {"image": image}, None, FoolingParams())
    assert result.scalars["fooled"] == 1.0 and result.scalars["easiest"] == 1.0
    assert result.scalars["linf_255"] <= FoolingParams().epsilon + 1e-3


def test_the_curve_rises_at_each_image_s_smallest_fooling_change() -> None:
    curve = robustness.from_smallest([2.0, None, 1.0, 4.0], 8.0, "random")
    assert curve.budgets == (0.0, 1.0, 2.0, 4.0, 8.0) and curve.fooled == (0.0, 0.25, 0.5, 0.75, 0.75)
    assert curve.at(3.0) == 0.5 and curve.at(0.5) == 0.0 and curve.at(100.0) == 0.75 and curve.images == 4


def test_the_result_carries_the_built_in_model_s_measured_curve(builtin: LoadedModel) -> None:
    shipped = json.loads(robustness.curve_path(builtin).read_text())  # type: ignore[union-attr]
    spec = registry.get("fooling")
    result = spec.run(builtin, {"image": torch.rand(3, 64, 64)}, 1, spec.params(steps=2))
    budgets, fooled = result.series["robustness"]
    smallest = shipped["smallest_linf_255"]
    assert result.scalars["robustness_images"] == len(smallest)
    within_16 = sum(s is not None and s <= 16.0 for s in smallest) / len(smallest)
    assert max(f for b, f in zip(budgets, fooled, strict=True) if b <= 16.0) == pytest.approx(within_16)
    # the default budget is one where the measured curve says most images are fooled
    assert within_16 >= 0.9 and FoolingParams().epsilon == 16.0


def test_a_curve_measured_on_other_weights_is_not_shown(builtin: LoadedModel, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = robustness.write_curve(builtin, [1.0, None], 8.0, "random", 100, tmp_path / "curve.json")
    monkeypatch.setattr(robustness, "curve_path", lambda _loaded: path)
    assert robustness.measured_curve(builtin) is not None
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "weights_sha256": "0" * 64}))
    assert robustness.measured_curve(builtin) is None
