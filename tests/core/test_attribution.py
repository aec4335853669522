"""Saliency, guided backprop and Grad-CAM against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens.hooks import UnsupportedArchitectureError, count_hooks
from convlens.techniques.attribution.common import TargetError
from convlens.techniques.attribution.gradcam import GradCamParams, grad_cam
from convlens.techniques.attribution.guided import GuidedParams, guided_backprop
from convlens.techniques.attribution.saliency import saliency


def test_saliency_of_a_linear_model_is_abs_weight_maxed_over_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 3)).eval()
    x = torch.randn(1, 3, 4, 5)
    result = saliency(model, x, target=2)
    expected = model[1].weight[2].detach().view(3, 4, 5).abs().amax(dim=0)
    torch.testing.assert_close(result.raw[0], expected)
    torch.testing.assert_close(result.map[0], expected / expected.max())
    assert result.target.tolist() == [2]
    torch.testing.assert_close(result.score, model(x)[:, 2].detach())


def test_saliency_default_target_is_the_predicted_class(tiny_cnn: nn.Module, tiny_input: torch.Tensor) -> None:
    result = saliency(tiny_cnn, tiny_input)
    assert result.target.tolist() == tiny_cnn(tiny_input).argmax(1).tolist()


def test_saliency_rejects_targets_out_of_range(tiny_cnn: nn.Module, tiny_input: torch.Tensor) -> None:
    with pytest.raises(TargetError, match=r"\[0, 4\]"):
        saliency(tiny_cnn, tiny_input, target=5)
    with pytest.raises(TargetError, match="2 targets for a batch of 2|3 targets"):
        saliency(tiny_cnn, tiny_input, target=[1, 2, 3])


class TwoLayer(nn.Module):
    """x (1,1,1,2) → W1 → ReLU → W2 → score. W1 = I, W2 = [1, -1]: a guided gradient by hand."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.fc1 = nn.Linear(2, 2, bias=False)
        self.act = nn.ReLU(inplace=style == "inplace")
        self.fc2 = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.eye(2))
            self.fc2.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x.flatten(1))
        h = F.relu(h) if self.style == "functional" else self.act(h)
        return self.fc2(h)


@pytest.mark.parametrize("style", ["module", "inplace", "functional"])
def test_guided_backprop_keeps_only_positive_gradients(style: str) -> None:
    model = TwoLayer(style).eval()
    x = torch.tensor([[[[1.0, 1.0]]]])
    vanilla = saliency(model, x, target=0).gradient
    guided = guided_backprop(model, x, target=0).gradient
    # d score/dx = W1^T (relu'(h) * W2^T) = [1, -1]; guided clamps the -1 coming down into the ReLU.
    torch.testing.assert_close(vanilla, torch.tensor([[[[1.0, -1.0]]]]))
    torch.testing.assert_close(guided, torch.tensor([[[[1.0, 0.0]]]]))


def test_guided_backprop_respects_the_forward_relu_mask() -> None:
    model = TwoLayer("module").eval()
    x = torch.tensor([[[[1.0, -1.0]]]])  # h = [1, -1]: the second unit is off
    guided = guided_backprop(model, x, target=0).gradient
    torch.testing.assert_close(guided, torch.tensor([[[[1.0, 0.0]]]]))
    with torch.no_grad():
        model.fc2.weight.copy_(torch.tensor([[-1.0, 1.0]]))
    guided = guided_backprop(model, x, target=0).gradient
    torch.testing.assert_close(guided, torch.zeros(1, 1, 1, 2))  # +1 reaches an off unit, -1 is clamped


def test_guided_backprop_functional_and_module_relus_agree(tiny_input: torch.Tensor) -> None:
    torch.manual_seed(0)
    module_net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(inplace=True),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()

    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(module_net[0](x))
            x = torch.relu_(module_net[2](x))
            return module_net[6](module_net[4](x).flatten(1))

    a = guided_backprop(module_net, tiny_input, target=1).gradient
    b = guided_backprop(Functional().eval(), tiny_input, target=1).gradient
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, saliency(module_net, tiny_input, target=1).gradient)


def test_guided_backprop_refuses_other_activations() -> None:
    gelu_net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.GELU(), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedArchitectureError, match="gelu"):
        guided_backprop(gelu_net, torch.randn(1, 3, 2, 2))
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    with pytest.raises(UnsupportedArchitectureError, match="no ReLU"):
        guided_backprop(linear, torch.randn(1, 3, 2, 2))
    # After the failure ReLUs behave normally again (the mode was popped).
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    F.relu(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0]


def test_guided_backprop_of_a_channel_by_hand() -> None:
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -3.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, 1.0]))
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.tensor([[[[1.0, -2.0], [1.5, 0.5]]]])
    # channel 0 = relu(2x): on at x > 0, strongest at x = 1.5 (position (1, 0)), peak 3.
    by_sum = guided_backprop(model, x, params=GuidedParams(layer="1", channel=0, reduce="sum"))
    torch.testing.assert_close(by_sum.gradient, torch.tensor([[[[2.0, 0.0], [2.0, 2.0]]]]))
    by_max = guided_backprop(model, x, params=GuidedParams(layer="1", channel=0, reduce="max"))
    torch.testing.assert_close(by_max.gradient, torch.tensor([[[[0.0, 0.0], [2.0, 0.0]]]]))
    # channel None picks the channel whose strongest unit is largest: channel 1 = relu(1 - 3x) peaks at 7.
    auto = guided_backprop(model, x, params=GuidedParams(layer="1"))
    assert auto.target.tolist() == [1]
    torch.testing.assert_close(auto.gradient, torch.tensor([[[[0.0, -3.0], [0.0, 0.0]]]]))
    with pytest.raises(TargetError, match="channel"):
        guided_backprop(model, x, params=GuidedParams(layer="1", channel=2))


class HandCam(nn.Module):
    """A = conv1x1(x) with weights [1, 2]; scores = Linear(GAP(A)) with weights [[1, 0], [0, -1]]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_grad_cam_by_hand() -> None:
    model = HandCam().eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Class 0: dS/dA_0 = 1/16 everywhere, dS/dA_1 = 0 → alpha = [1/16, 0], L = relu(x / 16).
    cam0 = grad_cam(model, x, target=0, params=GradCamParams(layer="conv"))
    torch.testing.assert_close(cam0.raw[0], x[0, 0] / 16)
    torch.testing.assert_close(cam0.map[0], x[0, 0] / 15)
    # Class 1: alpha = [0, -1/16], L = relu(-2x / 16) = 0 everywhere.
    cam1 = grad_cam(model, x, target=1, params=GradCamParams(layer="conv"))
    assert float(cam1.raw.abs().max()) == 0.0
    assert float(cam1.map.abs().max()) == 0.0


def test_grad_cam_upsamples_a_coarse_layer_to_the_input() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 2, stride=2, bias=False), nn.Flatten(), nn.LazyLinear(1))
    with torch.no_grad():
        model[0].weight.fill_(0.25)
    model(torch.zeros(1, 1, 8, 8))
    with torch.no_grad():
        model[2].weight.fill_(1.0)
    x = torch.zeros(1, 1, 8, 8)
    x[..., :2, :2] = 1.0  # only the top-left 2×2 cell of the 4×4 grid is active
    result = grad_cam(model.eval(), x, target=0, params=GradCamParams(layer="0"))
    assert result.raw.shape == (1, 4, 4) and result.map.shape == (1, 8, 8)
    assert float(result.raw[0, 0, 0]) > 0 and float(result.raw[0, 1:, :].abs().sum()) == 0
    assert result.map[0].argmax() // 8 < 2 and result.map[0].argmax() % 8 < 2
    assert result.scalars == {"layer_height": 4.0, "layer_width": 4.0}


def test_grad_cam_default_layer_and_capture_before_inplace_relu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 10, 10)
    at_conv = grad_cam(model, x, target=0, params=GradCamParams(layer="0"))
    at_relu = grad_cam(model, x, target=0, params=GradCamParams(layer="1"))
    default = grad_cam(model, x, target=0)
    assert default.objective.endswith("via 1")
    torch.testing.assert_close(default.map, at_relu.map)
    # The conv's captured activation keeps its negative values despite the in-place ReLU after it,
    # so the conv map differs from the ReLU map (gradients are also masked differently).
    assert not torch.allclose(at_conv.raw, at_relu.raw)
    assert count_hooks(model) == 0
