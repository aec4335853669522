"""The layer catalogue: receptive fields computed from the modules, checked by hand and empirically."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from convlens.receptive_field import default_cam_layer, layer_catalogue


def rows(model: nn.Module, size: int) -> dict[str, tuple[int, int]]:
    return {r.name: (r.receptive_field, r.stride) for r in layer_catalogue(model.eval(), size)}


def test_a_known_stack_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # rf 3, jump 1
        nn.Conv2d(4, 4, 3, padding=1),  # rf 5
        nn.MaxPool2d(2),  # rf 6, jump 2
        nn.Conv2d(4, 4, 3, padding=1),  # rf 6 + 2*2 = 10
        nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2),  # k_eff 5: rf 10 + 4*2 = 18, jump 4
        nn.AvgPool2d(3, stride=1),  # rf 18 + 2*4 = 26
    )
    assert rows(model, 32) == {"0": (3, 1), "1": (5, 1), "2": (6, 2), "3": (10, 2), "4": (18, 4), "5": (26, 4)}


def test_residual_add_and_concat_take_the_longest_path() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 5, padding=2)  # rf 5
            self.b = nn.Conv2d(3, 3, 1)  # rf 1
            self.c = nn.Conv2d(6, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x) + self.b(x)  # rf 5
            z = torch.cat([y, F.relu(self.b(x))], dim=1)  # rf 5
            return self.c(z)  # rf 7

    assert rows(Branchy(), 16) == {"a": (5, 1), "b": (1, 1), "c": (7, 1)}


def test_computed_field_equals_the_gradient_support_of_a_positive_stack() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                          nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    # Positive weights, average instead of max pooling: every pixel in the field gets a gradient.
    probe = nn.Sequential(*(nn.AvgPool2d(m.kernel_size, m.stride, m.padding) if isinstance(m, nn.MaxPool2d) else m
                            for m in model))
    with torch.no_grad():
        for m in probe:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight.abs() + 0.1)
    x = torch.ones(1, 1, 64, 64, requires_grad=True)
    out = probe(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    support = x.grad[0, 0].abs().sum(dim=0).nonzero()
    empirical = int(support.max() - support.min() + 1)
    catalogue = {r.name: r for r in layer_catalogue(model.eval(), 64, in_channels=1)}
    assert catalogue["5"].receptive_field == empirical == 19  # 5 → 5+2·1 = 7 → 7+2·2 = 11 → 11+2·4 = 19
    assert catalogue["5"].stride == 4
    # The box of that unit covers exactly the gradient support.
    top, left, bottom, right = catalogue["5"].box(out.shape[2] // 2, out.shape[3] // 2, 64, 64)
    assert (bottom - top, right - left) == (empirical, empirical)
    assert int(support.min()) == left


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (tvm.vgg16, {"features.29": (196, 16), "features.30": (212, 32)}),  # Araujo et al. 2019: VGG-16 212
        (tvm.alexnet, {"features.0": (11, 4), "features.12": (195, 32)}),  # AlexNet 195
        (tvm.resnet18, {"maxpool": (11, 4), "layer1": (43, 4), "layer4": (435, 32)}),
        (tvm.resnet50, {"layer3": (267, 16), "layer4": (427, 32)}),
    ],
)
def test_torchvision_receptive_fields_match_the_literature(builder, expected) -> None:  # type: ignore[no-untyped-def]
    catalogue = rows(builder(), 224)
    assert {k: catalogue[k] for k in expected} == expected


def test_catalogue_shapes_order_and_global_layers() -> None:
    catalogue = layer_catalogue(tvm.resnet18().eval(), 224)
    by_name = {r.name: r for r in catalogue}
    assert by_name["layer4"].output_shape == (512, 7, 7)
    assert by_name["fc"].output_shape == (1000,) and by_name["fc"].is_global
    assert not by_name["layer4"].is_global
    names = [r.name for r in catalogue]
    assert names.index("layer1") < names.index("layer2") < names.index("fc")


@pytest.mark.parametrize(
    ("builder", "expected"),
    [(tvm.vgg16, "features.29"), (tvm.alexnet, "features.11"), (tvm.resnet18, "layer4")],
)
def test_default_grad_cam_layer_is_the_last_conv_stage(builder, expected) -> None:  # type: ignore[no-untyped-def]
    model = builder().eval()
    assert default_cam_layer(model, layer_catalogue(model, 224)) == expected
