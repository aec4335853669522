"""A faithfulness measurement reports its progress all the way, the randomisation cascade included (its share of
the time is large), so the dashboard's estimate of the time left holds to the end."""

from __future__ import annotations

import torch

from convlens import pipeline
from convlens.faithfulness import randomised_layers
from convlens.models import load_model


def test_progress_counts_every_map_and_reaches_its_total() -> None:
    torch.set_num_threads(1)
    loaded = load_model("builtin")
    seen: list[tuple[int, int]] = []
    pipeline.run(loaded, "faithfulness", [{}], params={"technique": "vanilla", "n": 2, "steps": 2,
                                                        "randomisation_images": 2},
                 progress=lambda done, total, _preview: seen.append((done, total)))
    layers = len(randomised_layers(loaded.net))
    total = 2 * 2 + 2 * (layers + 1)  # a map per image twice, then the original and one per randomised layer
    assert {t for _, t in seen} == {total} and seen[-1][0] == total
    done = [d for d, _ in seen]
    assert done == sorted(done)
    during = [d for d in done if 2 * 2 < d < total]  # reports while the cascade runs, one per layer randomised
    assert len(during) == layers - 1
