"""Incremental occlusion (Nakandala et al. 2019) gives the full-batch map, on a toy with every rule, the
built-in model and a torchvision ResNet; the box geometry by hand; the approximation guard."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from convlens.builtin.dataset import render_batch
from convlens.models import load_model
from convlens.pipeline import parse_params
from convlens.schema import SchemaError
from convlens.techniques.attribution import incremental
from convlens.techniques.attribution import occlusion as occlusion_module
from convlens.techniques.attribution.occlusion import OcclusionParams, occlusion
from tests import numerics


class Toy(nn.Module):
    """Padding, stride, dilation, groups, max- and average-pooling, in-place ReLU, a residual ``+=``, a
    scalar multiply, a method call and a ``cat`` (no rule: materialised mid-network)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.pool(self.bn(self.stem(x)) - 2) + 2)  # pooling negative values: padding must be -inf
        y = self.b(F.relu(self.a(x)))
        x += y
        x = x.relu() * 0.5
        x = self.avg(self.down(torch.cat([x, x - 1], 1)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Branchy(nn.Module):
    """Control flow on a tensor's value: does not trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 100:
            y = -y
        return self.head(y.mean((2, 3)))


def _toy() -> Toy:
    torch.manual_seed(0)
    toy = Toy()
    toy.bn.running_mean.uniform_(-0.5, 0.5)
    toy.bn.running_var.uniform_(0.5, 2)
    return toy.eval()


def assert_same_map(model: nn.Module, x: torch.Tensor, **params: object) -> None:
    inc = occlusion(model, x, None, OcclusionParams(**params))  # type: ignore[arg-type]
    full = occlusion(model, x, None, OcclusionParams(incremental=False, **params))  # type: ignore[arg-type]
    assert inc.scalars["incremental"] == 1 and full.scalars["incremental"] == 0
    # the two paths order their sums differently: they agree within the rounding a forward pass brings
    # (measured on this CPU's kernels, tests.numerics), not within a fixed number
    noise = numerics.batch_rounding(model, x)
    torch.testing.assert_close(inc.raw, full.raw, atol=numerics.probability_drop_error(noise), rtol=0)
    torch.testing.assert_close(inc.signed["logit_drop"], full.signed["logit_drop"], atol=2 * 4 * noise, rtol=0)
    assert numerics.probability_drop_error(noise) < 1e-2 * float(full.raw.abs().max())


@pytest.mark.parametrize(("window", "stride", "fill"), [
    (6, 5, "zero"), (8, 3, "mean"), (7, 4, "blur"), (3, 2, 0.3), (32, 1, "zero"), (1, 7, "mean"),
])
def test_the_toy_gives_the_full_batch_map(window: int, stride: int, fill: object) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert_same_map(_toy(), x, window=window, stride=stride, fill=fill, batch_size=5)


def test_the_builtin_model_gives_the_full_batch_map() -> None:
    loaded = load_model("builtin")
    imgs, _, _ = render_batch(7, 2)
    x = torch.cat([loaded.prepare(Image.fromarray(i))[1] for i in imgs])
    for window, stride, fill in ((8, 4, "mean"), (12, 7, "blur"), (5, 6, 0.8)):
        assert_same_map(loaded.net, x, window=window, stride=stride, fill=fill)


def test_a_torchvision_resnet_gives_the_full_batch_map() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert_same_map(net, x, window=16, stride=8, fill="zero")
    assert_same_map(net, x, window=9, stride=11, fill="mean", batch_size=4)


class RowBias(nn.Module):
    """Adds a 1-D tensor, which broadcasts along the width: not the same at every position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("ramp", torch.linspace(-2, 2, 16))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x) + self.ramp) * torch.tensor(2.0)
        return self.head(y.amax((2, 3)))


def test_a_tensor_broadcast_along_the_width_is_not_taken_for_a_constant() -> None:
    torch.manual_seed(0)
    assert_same_map(RowBias().eval(), torch.randn(1, 3, 16, 16), window=4, stride=3)


def test_conv_box_by_hand() -> None:
    # 3×3, stride 1, padding 1 on a side of 10: a change in rows 4–5 reaches outputs 3–6, which read padded
    # rows 3–8 (input rows 2–7); at the border the box keeps its size and moves inside.
    assert incremental._window_rule([4], 2, 10, 10, 3, 1, 1, None) == ([3], 4, [3], 6)
    assert incremental._window_rule([0, 8], 2, 10, 10, 3, 1, 1, None) == ([0, 6], 4, [0, 6], 6)
    # 7×7 stride 2 padding 3 (a ResNet stem), change in rows 16–47 of 224: outputs 7–25 (19 rows)
    assert incremental._window_rule([16], 32, 224, 112, 7, 2, 3, None)[:2] == ([7], 19)
    # τ = 0.5: 19 rows of 112 stay (cap 56); of a side of 20 the cap is 10 rows around the centre (11–20),
    # moved inside the map (10–19)
    assert incremental._window_rule([16], 32, 224, 112, 7, 2, 3, (56, None))[:2] == ([7], 19)
    assert incremental._cap([7], [26], 20, (10, None)) == ([10], 10)


def test_a_model_that_does_not_trace_falls_back_to_whole_copies() -> None:
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(1, 3, 12, 12)
    result = occlusion(model, x, 1, OcclusionParams(window=4, stride=2))
    assert result.scalars["incremental"] == 0
    full = occlusion(model, x, 1, OcclusionParams(window=4, stride=2, incremental=False))
    torch.testing.assert_close(result.raw, full.raw)


def test_new_weights_are_seen() -> None:
    toy, x = _toy(), torch.randn(1, 3, 32, 32)
    occlusion(toy, x, 0, OcclusionParams(window=8, stride=8))
    with torch.no_grad():
        toy.a.weight.mul_(-3)
        toy.bn.running_var.mul_(4)
    assert_same_map(toy, x, window=8, stride=8)


def test_progress_and_the_memory_sized_batch() -> None:
    toy, x = _toy(), torch.randn(2, 3, 32, 32)
    steps: list[tuple[int, int]] = []
    result = occlusion(toy, x, 0, OcclusionParams(window=4, stride=2, memory_budget_mb=1),
                       progress=lambda done, total, _preview: steps.append((done, total)))
    assert steps[-1] == (2 * 225, 2 * 225) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert len(steps) > 2 and result.scalars["batch_size"] >= steps[0][0]


def test_tau_one_is_exact_and_kept() -> None:
    toy, x = _toy(), torch.randn(1, 3, 32, 32)
    approx = occlusion(toy, x, 0, OcclusionParams(window=8, stride=4, approximation=1.0))
    exact = occlusion(toy, x, 0, OcclusionParams(window=8, stride=4))
    assert approx.scalars["approximate"] == 1
    torch.testing.assert_close(approx.raw, exact.raw)


def test_a_lossy_approximation_is_refused_and_the_image_redone_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    exact = occlusion(model, x, 0, OcclusionParams(window=6, stride=3, fill="zero"))
    params = OcclusionParams(window=6, stride=3, fill="zero", approximation=0.05)
    guarded = occlusion(model, x, 0, params)
    assert guarded.scalars["approximate"] == 0
    torch.testing.assert_close(guarded.raw, exact.raw)
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *_args: True)  # without the guard: a different map
    unguarded = occlusion(model, x, 0, params)
    assert unguarded.scalars["approximate"] == 1
    assert torch.corrcoef(torch.stack([unguarded.raw.flatten(), exact.raw.flatten()]))[0, 1] < 0.9


@pytest.mark.parametrize("tau", [0.0, 0.01, 1.5])
def test_bad_approximation_names_its_field(tau: float) -> None:
    with pytest.raises(SchemaError) as info:
        occlusion(_toy(), torch.randn(1, 3, 32, 32), 0, OcclusionParams(approximation=tau))
    assert info.value.field == "params.approximation"
    with pytest.raises(SchemaError) as info:
        parse_params(OcclusionParams, {"approximation": tau})
    assert info.value.field == "params.approximation"


class ConfidentHead(nn.Module):
    """A conv body and a linear head whose logits are ~300: in bfloat16 they round to steps of 2, far more
    than the ~0.05 a window moves them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0.5, -0.5, 0.25], [0.0, 0.0, 0.0, 0.0]]))
            self.head.bias.copy_(torch.tensor([300.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


class LargeActivations(nn.Module):
    """Activations near 300 (a conv bias) that a 4×4 window moves by ~0.1: bfloat16 holds 300 only in steps
    of 2, so a bfloat16 forward of the activations themselves loses the window's effect entirely."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.mix = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.body.bias.fill_(300.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.mix(torch.relu(self.body(x))), 1).flatten(1))


def test_reduced_precision_rounds_the_change_not_the_activation() -> None:
    net = LargeActivations().eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tops, lefts = [0, 4, 8, 12], [8, 4, 0, 12]
    filled = torch.zeros(4, 3, 4, 4)
    copies = x.repeat(4, 1, 1, 1)
    for b, (t, left) in enumerate(zip(tops, lefts, strict=True)):
        copies[b, :, t:t + 4, left:left + 4] = 0
    graph = incremental.traced(net)
    assert graph is not None
    with torch.inference_mode():
        clean, exact = net(x), net(copies)
        session = incremental.Session(graph, x, None, torch.bfloat16)
        reduced, whole = session.logits(filled, tops, lefts), session.forward(copies)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = net(copies).float()
    change = exact - clean
    assert reduced.dtype == torch.float32 and change.abs().max() > 1e-3
    # two convolutions hold the change in bfloat16, each rounding its input and its weights once: at most four
    # roundings of bfloat16's unit 2^-8 relative to the change, whatever kernels the CPU runs them with
    bf16_unit = torch.finfo(torch.bfloat16).eps / 2
    for ours in (reduced, whole):
        torch.testing.assert_close(ours - clean, change, rtol=0, atol=4 * bf16_unit * float(change.abs().max()))
    assert float((autocast - exact).abs().max()) > float(change.abs().max())  # what a bfloat16 forward does


def test_whole_copies_in_reduced_precision_keep_a_float32_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(occlusion_module, "fast_reduced_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *args: True)  # keep the reduced result
    net, x = ConfidentHead().eval(), torch.rand(1, 3, 16, 16)
    exact = occlusion(net, x, 0, OcclusionParams(window=4, stride=4, fill="zero", incremental=False))
    reduced = occlusion(net, x, 0, OcclusionParams(window=4, stride=4, fill="zero", incremental=False,
                                                   precision="reduced"))
    assert reduced.scalars["reduced_precision"] == 1.0
    both = torch.stack([exact.signed["logit_drop"].flatten(), reduced.signed["logit_drop"].flatten()])
    assert float(torch.corrcoef(both)[0, 1]) > 0.99  # a bfloat16 head: logits near 300 in steps of 2


def test_reduced_precision_keeps_a_confident_resnets_map(monkeypatch: pytest.MonkeyPatch) -> None:
    # A confident ResNet (p ≈ 0.99) whose windows move the target by < 0.01: bfloat16 activations with a float32
    # head correlate 0.998 with float32 here; bfloat16 changes 0.99996.
    monkeypatch.setattr(occlusion_module, "fast_reduced_dtype", lambda device: torch.bfloat16)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        net.fc.weight.mul_(4)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    params = {"window": 16, "stride": 8, "fill": "zero"}
    exact = occlusion(net, x, None, OcclusionParams(**params))  # type: ignore[arg-type]
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *args: True)  # score the bfloat16 map itself
    reduced = occlusion(net, x, None, OcclusionParams(precision="reduced", **params))  # type: ignore[arg-type]
    assert reduced.scalars["reduced_precision"] == 1 and float(exact.score[0]) > 0.9
    for key in ("raw", "logit_drop"):
        a = exact.raw if key == "raw" else exact.signed[key]
        b = reduced.raw if key == "raw" else reduced.signed[key]
        assert float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.999, key


def test_capped_boxes_stay_around_their_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # τ caps each box around the window's own projective field; a box grown to the whole map would be capped
    # around the map's centre instead and lose the window's effect.
    loaded = load_model("builtin")
    imgs, _, _ = render_batch(1, 2)
    x = torch.cat([loaded.prepare(Image.fromarray(i))[1] for i in imgs])
    exact = occlusion(loaded.net, x, None, OcclusionParams(window=8, stride=4, fill="zero"))
    monkeypatch.setattr(occlusion_module, "_agrees", lambda *args: True)  # score the approximate map itself
    approx = occlusion(loaded.net, x, None, OcclusionParams(window=8, stride=4, fill="zero", approximation=0.8))
    assert approx.scalars["approximate"] == 1
    for a, b in zip(exact.raw, approx.raw, strict=True):
        assert float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.99
