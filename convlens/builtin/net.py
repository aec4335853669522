"""BuiltinNet: the small, fully convolutional CNN trained on the builtin shapes dataset."""

from __future__ import annotations

import torch
from torch import nn

# Inputs are scaled to [0, 1] then normalised with these (fixed, not dataset-fitted) constants.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.25, 0.25, 0.25)

CODE_DIM = 128


def _conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """Conv (no bias, BN follows) → BatchNorm → its own ReLU instance; 'same' padding."""
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class BuiltinNet(nn.Module):
    """Small CNN; ``forward`` maps normalised (N,3,H,W) images to (N,num_classes) logits.

    Resolution for a 64-px input: ``features.0`` (7×7, stride 2) → 32×32, ``features.6``
    max-pool → 16×16, ``features.10`` → 8×8; three 3×3 convs at 8×8 (the last one dilated)
    grow the receptive field to 89 px, so a unit of the last ReLU (``features.19``,
    128×8×8, the Grad-CAM layer) sees a whole object rather than a piece of its outline.
    Any input side ≥ 32 works because everything up to ``pool`` is convolutional.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(3, 32, kernel=7, stride=2),  # 0-2: 32×32
            *_conv_block(32, 64),  # 3-5
            nn.MaxPool2d(2),  # 6: 16×16
            *_conv_block(64, 128),  # 7-9
            nn.MaxPool2d(2),  # 10: 8×8
            *_conv_block(128, 128),  # 11-13
            *_conv_block(128, 128),  # 14-16
            *_conv_block(128, 128, dilation=2),  # 17-19: last conv stage, Grad-CAM target
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.code = nn.Sequential(nn.Flatten(), nn.Linear(128, CODE_DIM), nn.ReLU())
        self.classifier = nn.Linear(CODE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) normalised images → (N,num_classes) unnormalised logits."""
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,3,H,W) → logits (N,num_classes) and the last conv stage's activations (N,128,h,w)."""
        features = self.features(x)
        return self.classifier(self.code(self.pool(features))), features


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) float images in [0, 1] → model input normalised with MEAN/STD."""
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
