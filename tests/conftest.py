"""Shared fixtures: tiny deterministic models whose behaviour can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv(3→4) → ReLU → pool → conv(4→6) → ReLU → GAP → linear(6→5). Input (N, 3, 16, 16)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(inplace=inplace),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def tiny_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$CONVLENS_MODELS_DIR`` in a fresh folder, and no shipped models: tests of the models directory itself."""
    from convlens.zoo import MODELS_DIR_ENV, store

    root = tmp_path / "models"
    monkeypatch.setenv(MODELS_DIR_ENV, str(root))
    monkeypatch.setattr(store, "SHIPPED_DIR", tmp_path / "shipped")
    return root
