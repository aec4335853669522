"""The built-in model on shapes and textures drawn with PIL, as a new user draws them (tests/core/drawn.py).

The issue's target is top-1 ≥ 0.90 *per kind of drawing* with Grad-CAM pointing ≥ 0.90; today the model
reaches 0.90 top-1 overall but confuses fine checkerboards with diagonal stripes (see the model card).
These tests guard the levels reached and check the drawings themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.builtin.dataset import CLASSES
from convlens.faithfulness import pointing_hits
from convlens.models import load_model
from convlens.techniques.attribution.gradcam import grad_cam
from tests.core.drawn import drawn_set


@pytest.fixture(scope="module")
def scored():  # type: ignore[no-untyped-def]
    loaded = load_model("builtin")
    rows = []
    for drawing in drawn_set(123, 20):
        _, x = loaded.prepare(drawing.image)
        mask = loaded.preprocessing.display(Image.fromarray(drawing.mask.astype(np.uint8) * 255))[0] >= 0.5
        result = grad_cam(loaded.net, x, torch.tensor([drawing.label]))
        rows.append((drawing, int(result.logits.argmax()), bool(pointing_hits(result.map, mask[None])[0])))
    return rows


def test_drawings_are_what_they_say() -> None:
    drawings = drawn_set(5, 2)
    assert sorted({d.label for d in drawings}) == list(range(len(CLASSES)))
    assert {d.image.size[0] for d in drawings} >= {64, 96}
    for d in drawings:
        assert d.mask.shape == d.image.size[::-1] and 0.05 < d.mask.mean() < 0.6
        pixels = np.asarray(d.image, dtype=float)
        inside, outside = pixels[d.mask].mean(0), pixels[~d.mask].mean(0)
        assert np.linalg.norm(inside - outside) > 20 or CLASSES[d.label] == "ring"


def test_drawn_shapes_are_recognised(scored) -> None:  # type: ignore[no-untyped-def]
    shapes = [(d, p) for d, p, _ in scored if d.label < 5]
    assert np.mean([p == d.label for d, p in shapes]) >= 0.95
    triangles = [p for d, p, _ in scored if CLASSES[d.label] == "triangle"]
    assert CLASSES.index("cross") not in triangles


def test_drawn_set_overall_levels(scored) -> None:  # type: ignore[no-untyped-def]
    top1 = np.mean([p == d.label for d, p, _ in scored])
    pointing = np.mean([hit for _, _, hit in scored])
    assert top1 >= 0.88 and pointing >= 0.90, (top1, pointing)  # measured 0.90 and 0.96 (200 drawings)
