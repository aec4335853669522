"""Every registered technique honours the same contract, whatever the model looks like."""

from __future__ import annotations

import pytest
import torch

from convlens.explain import TECHNIQUES
from convlens.hooks import count_hooks
from tests.conftest import TinyCNN


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
def test_technique_contract(name: str, inplace: bool, frozen: bool, tiny_input: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = TinyCNN(inplace=inplace).eval().requires_grad_(not frozen)
    technique = TECHNIQUES[name]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = tiny_input.clone()

    with torch.no_grad():  # callers may hold grad mode off; the technique turns it on for itself only
        result = technique.run(model, x, None, technique.params())
        assert not torch.is_grad_enabled()

    n, _, h, w = x.shape
    assert result.map.shape == (n, h, w)
    assert torch.isfinite(result.map).all()
    assert float(result.map.min()) >= 0.0 and float(result.map.max()) <= 1.0
    assert torch.allclose(result.map.flatten(1).amax(1), torch.ones(n)) or float(result.map.max()) == 0.0
    assert not result.map.requires_grad
    assert result.target.shape == (n,) and result.logits.shape == (n, 5)
    assert result.target.tolist() == model(x).argmax(1).tolist()
    # Nothing left behind: hooks, weights, gradients, the caller's tensor, the module's mode.
    assert count_hooks(model) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad == (not frozen) for p in model.parameters())
    assert torch.equal(x, tiny_input) and x.grad is None
    assert not model.training


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_technique_explains_the_target_it_is_given(name: str, tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    technique = TECHNIQUES[name]
    a = technique.run(tiny_cnn, tiny_input, torch.tensor([0, 3]), technique.params())
    assert a.target.tolist() == [0, 3]
    torch.testing.assert_close(a.score, tiny_cnn(tiny_input)[[0, 1], [0, 3]].detach())


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_batch_items_are_independent(name: str, tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    technique = TECHNIQUES[name]
    both = technique.run(tiny_cnn, tiny_input, torch.tensor([1, 2]), technique.params())
    second = technique.run(tiny_cnn, tiny_input[1:], torch.tensor([2]), technique.params())
    torch.testing.assert_close(both.map[1:], second.map, atol=1e-5, rtol=1e-4)
