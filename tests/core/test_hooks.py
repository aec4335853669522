"""Hooks and model changes are always undone, even when the body raises."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens.hooks import UnknownLayerError, capture, count_hooks, guided_relu


def test_capture_records_and_removes_hooks(tiny_cnn: nn.Module, tiny_input: torch.Tensor) -> None:
    with capture(tiny_cnn, ["features.1", "features.4"], detach=True) as cap:
        assert count_hooks(tiny_cnn) == 2
        tiny_cnn(tiny_input)
    assert count_hooks(tiny_cnn) == 0
    assert cap["features.1"].shape == (2, 4, 16, 16)
    assert cap["features.4"].shape == (2, 6, 8, 8)
    assert float(cap["features.1"].min()) >= 0.0


def test_capture_removes_hooks_after_an_exception(tiny_cnn: nn.Module, tiny_input: torch.Tensor) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with capture(tiny_cnn, ["features.0", "classifier"]):
            tiny_cnn(tiny_input)
            raise RuntimeError("boom")
    assert count_hooks(tiny_cnn) == 0


def test_capture_rejects_unknown_layers_without_leaving_hooks(tiny_cnn: nn.Module) -> None:
    with pytest.raises(UnknownLayerError, match="features.9"):
        with capture(tiny_cnn, ["features.0", "features.9"]):
            pass
    assert count_hooks(tiny_cnn) == 0


def test_capture_is_not_clobbered_by_a_following_inplace_relu(tiny_input: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True)).eval()
    with torch.no_grad():
        expected = model[0](tiny_input)
    with capture(model, ["0"]) as cap:
        out = model(tiny_input)
    torch.testing.assert_close(cap["0"], expected)
    assert float(cap["0"].min()) < 0 <= float(out.min())


def test_guided_relu_is_undone_after_an_exception() -> None:
    model = nn.ReLU()
    with pytest.raises(ValueError, match="inside"):
        with guided_relu(model):
            model(torch.ones(2))
            raise ValueError("inside")
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (F.relu(x) * torch.tensor([1.0, -1.0])).sum().backward()
    assert x.grad.tolist() == [1.0, -1.0]  # a normal ReLU again: negative gradients pass


def test_techniques_leave_the_state_dict_unchanged(tiny_cnn: nn.Module, tiny_input: torch.Tensor) -> None:
    from convlens import registry

    before = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    for technique in registry.of_family("attribution"):
        technique.run(tiny_cnn, tiny_input, None, technique.params())
    after = tiny_cnn.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_grad_root_lets_a_frozen_model_give_layer_gradients_without_an_input_graph(
    tiny_cnn: nn.Module, tiny_input: torch.Tensor
) -> None:
    with capture(tiny_cnn, ["features.4"]) as cap:  # reference: parameters require grad
        out = tiny_cnn(tiny_input)
        (expected,) = torch.autograd.grad(out[:, 1].sum(), cap["features.4"])
    frozen = [p.requires_grad_(False) for p in tiny_cnn.parameters()]
    try:
        with capture(tiny_cnn, ["features.1", "features.4"], grad_root=True) as cap:
            out = tiny_cnn(tiny_input)
            assert cap["features.1"].grad_fn is None  # a leaf: the first conv recorded no graph
            (got,) = torch.autograd.grad(out[:, 1].sum(), cap["features.4"])
    finally:
        for p in frozen:
            p.requires_grad_(True)
    assert torch.allclose(got, expected, atol=1e-6)
