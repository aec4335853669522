"""A-priori rounding bounds for tests that compare float32 results computed two ways.

Two computations of the same float32 quantity that differ only in how their sums are ordered (another
batch composition, another kernel picked for another CPU capability by ATen, oneDNN or MKL) both lie
within the rounding bound of the exact value, so they differ by at most twice that bound. A sum of n
products is within γ_n · Σ|terms| of exact, γ_n = n·u / (1 − n·u), u = ε/2 (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2002, §3.1). Through a network of convolutions and linear maps with
1-Lipschitz, monotone activations, Σ|terms| at every unit is at most the same network run with absolute
weights and biases on |x| (max-pooling replaced by sum-pooling, which dominates it), so to first order
the error of an output is ≤ γ_L × that output, L the sum of the layers' fan-ins and fan-outs (fan-outs:
the backward pass sums over them). The same holds for the input gradient with the absolute network's
gradient. A tolerance built this way scales with the data (weights, input, the map's own peak) and with
float32's epsilon; it never depends on which CPU ran the test.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

U32 = torch.finfo(torch.float32).eps / 2


def gamma(n: int, u: float = U32) -> float:
    """γ_n = n·u / (1 − n·u): the relative rounding bound of a sum of n products."""
    assert n * u < 1
    return n * u / (1 - n * u)


def absolute_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with |weights|, |biases| and max-pools replaced by sum-pools.

    Only modules whose bound is worked out here are accepted; anything else with parameters is refused so a
    bound is never silently wrong."""
    net = copy.deepcopy(model).eval().requires_grad_(False)
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            k, s, p = module.kernel_size, module.stride, module.padding
            net.set_submodule(name, nn.AvgPool2d(k, s, p, divisor_override=int(math.prod(_pair(k)))))
        elif isinstance(module, nn.BatchNorm2d):  # eval mode: a per-channel scale and shift
            scale = module.weight / (module.running_var + module.eps).sqrt()
            shift = module.bias - scale * module.running_mean
            affine = nn.Conv2d(module.num_features, module.num_features, 1, groups=module.num_features)
            affine.weight.data = scale.abs().view(-1, 1, 1, 1).detach().clone()
            affine.bias.data = shift.abs().detach().clone()
            net.set_submodule(name, affine.requires_grad_(False))
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.abs_()
            if module.bias is not None:
                module.bias.abs_()
        elif any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"no rounding bound is worked out for {type(module).__name__}: refusing to guess one")
    return net


def _pair(k: int | tuple[int, ...]) -> tuple[int, ...]:
    return (k, k) if isinstance(k, int) else tuple(k)


def accumulation_length(model: nn.Module, x: Tensor) -> int:
    """L: the terms summed along the longest path, forward and backward (fan-in + fan-out per layer)."""
    lengths: list[int] = []

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            area = math.prod(module.kernel_size)
            lengths.append((module.in_channels + module.out_channels) // module.groups * area + 1)
        elif isinstance(module, nn.BatchNorm2d):
            lengths.append(3)
        elif isinstance(module, nn.Linear):
            lengths.append(module.in_features + module.out_features + 1)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            lengths.append(int(math.prod(_pair(module.kernel_size))))
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            lengths.append(inputs[0].shape[-2:].numel() // output.shape[-2:].numel() + 1)

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return sum(lengths) + logits.shape[1]  # + the softmax's sum over classes


def input_gradient_error(model: nn.Module, x: Tensor) -> Tensor:
    """(N, C, H, W) bound on the rounding error of d logit_t / dx for any target t (ReLU masks held): the
    absolute network's gradient of the sum of its logits dominates every real logit's gradient terms."""
    net, x_abs = absolute_network(model), x.abs().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(net(x_abs).sum(), x_abs)
    return gamma(accumulation_length(model, x)) * grad


def cam_error(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    """(N, h, w) bound on the rounding error of Grad-CAM's ReLU(Σ_c α_c A_c) at ``layer``: each α_c and A_c
    is within γ_L of its absolute-network value, and the channel sum adds γ_C."""
    net, seen = absolute_network(model), {}
    handle = net.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    try:
        with torch.enable_grad():
            out = net(x.abs().requires_grad_(True))
            (grad,) = torch.autograd.grad(out.sum(), seen["a"])
    finally:
        handle.remove()
    acts, alpha = seen["a"].detach(), grad.mean(dim=(2, 3))
    g = 2 * gamma(accumulation_length(model, x)) + gamma(acts.shape[1])
    return g * torch.einsum("nk,nkhw->nhw", alpha, acts)


def batch_rounding(model: nn.Module, x: Tensor, sizes: tuple[int, ...] = (2, 7)) -> float:
    """The largest change of any logit of ``x``'s rows when they run in batches of ``sizes`` instead of one at
    a time: the rounding a batch composition brings on this CPU's kernels, measured, and never below one ulp
    of the largest logit (kernels that happen to agree here may not on another CPU)."""
    rows = x.repeat(-(-max(sizes) // len(x)), 1, 1, 1)
    with torch.inference_mode():
        alone = torch.cat([model(rows[i:i + 1]) for i in range(len(rows))])
        worst = max(float((torch.cat([model(rows[i:i + b]) for i in range(0, len(rows), b)]) - alone).abs().max())
                    for b in sizes)
    return max(worst, torch.finfo(alone.dtype).eps * float(alone.abs().max()))


def probability_drop_error(logit_error: float, kernels: int = 4) -> float:
    """Bound on the rounding of an occlusion drop p(x) − p(x with a window filled) when every logit may be off
    by ``logit_error``: |Δp_t| ≤ 2·p_t·max|Δz| ≤ 2·max|Δz| (softmax), twice for the two probabilities.
    ``kernels``: how many times the measured rounding another window's batch may bring."""
    return 2 * 2 * kernels * logit_error


def unit_scaled_error(error: float, peak: float) -> float:
    """|a/|a|∞ − b/|b|∞| ≤ 2·max|a − b| / peak: the bound on maps scaled to [0, 1] by their peak."""
    return 2 * error / peak
