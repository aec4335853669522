"""The only place that hooks into a model. Everything here is a context manager that
leaves the model exactly as it found it, even when the body raises.

- :func:`capture` records the outputs of named layers during a forward pass. The
  tensor handed downstream is a clone, so an in-place op after the layer (a
  ``ReLU(inplace=True)`` after a conv) can't overwrite what was captured, and
  ``torch.autograd.grad(score, captured)`` gives dScore/dLayer.
- :func:`guided_relu` turns every ReLU the forward pass applies — module or
  functional (DenseNet and GoogLeNet call ``F.relu`` directly) — into a guided ReLU
  (Springenberg et al. 2015, "Striving for Simplicity"). It works at the level of
  ``torch`` function calls, so the model's modules are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode


class UnknownLayerError(KeyError):
    """A layer name that is not a dotted ``named_modules()`` path of the model."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        hint = ", ".join(list(known)[-8:])
        super().__init__(f"unknown layer {name!r}; layers are dotted module paths such as {hint}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists valid names."""
    if not isinstance(name, str) or not name:
        raise UnknownLayerError(str(name), [n for n, _ in model.named_modules() if n])
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UnknownLayerError(name, [n for n, _ in model.named_modules() if n]) from None


@dataclass
class Captured:
    """Outputs of the captured layers of the last forward pass, by layer name.

    A module called several times in one pass (ResNet blocks reuse their ``relu``)
    keeps the output of its last call.
    """

    activations: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.activations:
            raise RuntimeError(f"layer {name!r} was not reached by the forward pass")
        return self.activations[name]


@contextmanager
def capture(
    model: nn.Module, layers: Sequence[str], *, detach: bool = False, grad_root: bool = False
) -> Iterator[Captured]:
    """Record the outputs of ``layers`` (dotted names) for every forward pass in the block.

    ``grad_root``: an output that is in no autograd graph (frozen model, input without
    grad) becomes a leaf that requires grad, so dScore/dLayer can be taken while the
    layers before it run without recording a graph (what Grad-CAM needs, and no more).
    """
    captured = Captured()
    modules = [(name, resolve_layer(model, name)) for name in layers]
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if not isinstance(output, Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            if detach:
                captured.activations[name] = output.detach().clone()
                return None
            if grad_root and torch.is_grad_enabled() and not output.requires_grad:
                output = output.detach().requires_grad_(True)
            captured.activations[name] = output
            return output.clone()

        return hook

    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(make_hook(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Footprint:
    """The largest tensor any module produced per sample during the forward passes of a block."""

    largest_per_sample: int = 0  # elements


@contextmanager
def footprint(model: nn.Module) -> Iterator[Footprint]:
    """Measure the largest per-sample module output (to size batches to a memory budget)."""
    found = Footprint()

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and output.ndim >= 1 and output.shape[0] > 0:
            found.largest_per_sample = max(found.largest_per_sample, output[0].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


class UnsupportedArchitectureError(RuntimeError):
    """The model uses an operation a technique is not defined for."""


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward ``grad_in = (relu(x) > 0) * relu(grad_out)`` (the guided rule).

    One node per ReLU and no copy: the backward reuses ``threshold_backward``, the
    kernel of the ordinary ReLU backward, on the clamped gradient.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), out, 0)


_RELU_FUNCTIONS: set[Callable[..., Any]] = {
    torch.relu,
    torch.relu_,
    torch.nn.functional.relu,
    torch.nn.functional.relu_,
    Tensor.relu,
    Tensor.relu_,
}
_OTHER_ACTIVATIONS: set[Callable[..., Any]] = {
    torch.nn.functional.gelu,
    torch.nn.functional.silu,
    torch.nn.functional.hardswish,
    torch.nn.functional.hardsigmoid,
    torch.nn.functional.elu,
    torch.nn.functional.selu,
    torch.nn.functional.celu,
    torch.nn.functional.leaky_relu,
    torch.nn.functional.mish,
    torch.nn.functional.relu6,
    torch.nn.functional.hardtanh,
    torch.nn.functional.softplus,
    torch.nn.functional.prelu,
    torch.nn.functional.tanh,
    torch.nn.functional.sigmoid,
    torch.sigmoid,
    torch.tanh,
    Tensor.sigmoid,
    Tensor.tanh,
}


class _GuidedReLUMode(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.relu_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in _RELU_FUNCTIONS:
            self.relu_calls += 1
            # Out of place even for relu_: the input may be needed by other autograd nodes.
            return _GuidedReLU.apply(args[0])
        if func in _OTHER_ACTIVATIONS:
            name = getattr(func, "__name__", str(func))
            raise UnsupportedArchitectureError(
                f"guided backprop is defined for ReLU networks; this model applies {name!r}, "
                "so a guided map would be wrong (use vanilla saliency or Grad-CAM)"
            )
        return func(*args, **kwargs)


@contextmanager
def guided_relu(model: nn.Module) -> Iterator[_GuidedReLUMode]:
    """Forward passes in this block use guided ReLUs. The model itself is not modified.

    Raises :class:`UnsupportedArchitectureError` during the forward pass if the model
    applies a non-ReLU activation (GELU, SiLU, sigmoid gates, ...), or on exit if it
    applied no ReLU at all.
    """
    _ = model  # the mode is global to the block; the argument documents what it is for
    mode = _GuidedReLUMode()
    with mode:
        yield mode
    if mode.relu_calls == 0:
        raise UnsupportedArchitectureError("guided backprop found no ReLU in the forward pass")


def count_hooks(model: nn.Module) -> int:
    """Number of forward/backward hooks registered on the model's modules (for tests)."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(module._backward_pre_hooks)
    return total
