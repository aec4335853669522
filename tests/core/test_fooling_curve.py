"""The robustness curve measured from the product (robustness.measure_curve, the ``fooling_curve`` technique): on a
colour model whose smallest fooling change is known by hand, cancellation, and the kept curve reaching later fooling
answers on the same weights only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn

from convlens.corpus import datasets as store
from convlens.models import LoadedModel, Preprocessing
from convlens.pipeline import run
from convlens.results import Cancelled
from convlens.techniques.synthesis import robustness

MARGIN = 0.05  # the predicted colour channel is this much above the other two
# the class score is the mean of a channel: an L∞ change δ moves two channels' means apart by at most 2δ
SMALLEST_255 = MARGIN / 2 * 255  # 6.375/255: no change below it fools, whatever its pattern


def colour_model(sha: str | None = None) -> LoadedModel:
    """Class k's logit = the mean of colour channel k (identity normalisation); ``sha``: weights with that SHA-256."""
    torch.manual_seed(0)
    linear = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(3))
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval().requires_grad_(False)
    card = None if sha is None else SimpleNamespace(weights_sha256=sha)
    return LoadedModel("colours", net, ("red", "green", "blue"), Preprocessing(8, 8, (0.0,) * 3, (1.0,) * 3),
                       "random" if sha is None else "registered", card=card)


def pictures(n: int = 6) -> tuple[torch.Tensor, list[int]]:
    """(n, 3, 8, 8) grey pictures with channel i % 3 raised by MARGIN, and that channel (the model's prediction)."""
    x = torch.full((n, 3, 8, 8), 0.5)
    for i in range(n):
        x[i, i % 3] += MARGIN
    return x, [i % 3 for i in range(n)]


def test_no_budget_fools_nothing_a_wide_one_fools_all_and_the_share_rises_with_the_budget() -> None:
    loaded = colour_model()
    x, said = pictures()
    assert robustness.measure_curve(loaded, x, said, [0.0], steps=20) == [None] * len(x)
    assert robustness.measure_curve(loaded, x, said, [4.0], steps=50) == [None] * len(x)  # below SMALLEST_255
    found = robustness.measure_curve(loaded, x, said, [4.0, 8.0, 32.0], steps=100)
    assert all(s is not None and SMALLEST_255 - 1e-3 <= s <= 8.0 + 1e-3 for s in found), found
    curve = robustness.from_smallest(found, 32.0, "test")
    shares = [curve.at(b) for b in (0.0, 2.0, 4.0, 6.0, 7.0, 8.0, 16.0, 32.0)]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    assert curve.at(SMALLEST_255 - 0.01) == 0.0


def test_a_cancel_stops_the_measurement_with_the_images_done() -> None:
    loaded = colour_model()
    x, said = pictures()
    seen: list[int] = []

    def progress(done: int, total: int, _preview: object) -> None:
        seen.append(done)
        if done == 2:
            raise Cancelled("stop")

    found = robustness.measure_curve(loaded, x, said, [32.0], steps=30, progress=progress)
    assert len(found) == 2 and all(s is not None for s in found)
    assert seen == [0, 1, 2]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    folder = tmp_path / "folder"
    x, said = pictures()
    for i, (picture, label) in enumerate(zip(x, said, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((picture.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(
            folder / str(label) / f"{i}.png")
    store.import_folder("colours", folder)
    return tmp_path / "data"


def test_a_measured_curve_reaches_later_fooling_answers_on_the_same_weights_only(data_dir: Path) -> None:
    measured, other = colour_model("a" * 64), colour_model("b" * 64)
    picture = Image.new("RGB", (8, 8), (140, 128, 128))
    [before] = run(measured, "fooling", [{"image": picture}], [1], params={"steps": 5})
    assert "robustness" not in before.series
    [out] = run(measured, "fooling_curve", [{}], params={"dataset": "colours", "n": 4, "budgets": [8.0, 32.0],
                                                            "steps": 60})
    assert out.scalars["robustness_images"] == 4 and out.scalars["kept"] == 1
    budgets, shares = out.series["robustness"]
    assert budgets[0] == 0.0 and shares[0] == 0.0 and shares[-1] == 1.0
    png_margin_255 = round((0.5 + MARGIN) * 255) - round(0.5 * 255)  # the dataset's pictures are 8-bit
    assert min(budgets[1:]) >= png_margin_255 / 2 - 1e-3
    assert not any((data_dir.parent / "folder").rglob("*.json"))
    assert list((data_dir / robustness.MEASURED_DIR).glob("*.json")) == [
        data_dir / robustness.MEASURED_DIR / f"{'a' * 64}.json"]
    [after] = run(measured, "fooling", [{"image": picture}], [1], params={"steps": 5})
    assert after.series["robustness"][0] == pytest.approx(budgets, abs=1e-3)  # kept to 3 decimals
    assert after.series["robustness"][1] == pytest.approx(shares)
    assert after.scalars["robustness_images"] == 4
    [elsewhere] = run(other, "fooling", [{"image": picture}], [1], params={"steps": 5})
    assert "robustness" not in elsewhere.series and "robustness_images" not in elsewhere.scalars
    assert "colours" in [d.name for d in store.list_datasets()] and len(store.list_datasets()) == 1


def test_random_weights_keep_no_curve(data_dir: Path) -> None:
    [out] = run(colour_model(), "fooling_curve", [{}], params={"dataset": "colours", "n": 2, "budgets": [32.0],
                                                                 "steps": 30})
    assert out.scalars["kept"] == 0 and not (data_dir / robustness.MEASURED_DIR).exists()
