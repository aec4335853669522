"""Class activation maps: Grad-CAM (Selvaraju et al. 2017).

A variant of the family changes only :meth:`GradCam.channel_weights` (how the
layer's channels are weighted), in the way pytorch-grad-cam structures its CAMs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlens.hooks import capture
from convlens.images import Normalizer
from convlens.outputs import Scalar
from convlens.receptive_field import default_cam_layer, layer_catalogue
from convlens.registry import technique
from convlens.results import Attribution, Progress
from convlens.schema import SchemaError
from convlens.techniques.attribution.common import Target, check_input, model_device, resolve_target, unit_scale

_DEFAULT_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], str]] = weakref.WeakKeyDictionary()


def cam_layer(model: nn.Module, input_size: int, in_channels: int = 3) -> str:
    """The default Grad-CAM layer of ``model`` (cached per model, input size and channel count)."""
    per_size = _DEFAULT_LAYERS.setdefault(model, {})
    if (input_size, in_channels) not in per_size:
        per_size[input_size, in_channels] = default_cam_layer(model, layer_catalogue(model, input_size, in_channels))
    return per_size[input_size, in_channels]


@dataclass(frozen=True)
class GradCamParams:
    """``layer``: dotted module path; None picks the last spatial, non-pooling layer."""

    layer: str | None = None


class GradCam:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1–2; Chollet §9.4.3).

    alpha_k = mean_ij dS_c/dA_k[i, j];  L = ReLU(sum_k alpha_k A_k), upsampled
    bilinearly to the input and divided by its maximum.
    """

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """(N, K, h, w) activations and gradients → (N, K) channel weights."""
        return gradients.mean(dim=(2, 3))

    def __call__(
        self, model: nn.Module, x: Tensor, target: Target = None, params: GradCamParams = GradCamParams(),
        progress: Progress | None = None, to_input: Normalizer | None = None,
    ) -> Attribution:
        check_input(x)
        layer = params.layer or cam_layer(model, x.shape[-1], x.shape[1])
        with torch.enable_grad(), capture(model, [layer], grad_root=True) as cap:
            logits = model(x.detach().to(model_device(model)))
            acts = cap[layer]
            if acts.ndim != 4:
                raise SchemaError("layer", f"Grad-CAM needs a spatial layer (N, C, h, w); {layer!r} gives "
                                           f"{tuple(acts.shape)}")
            t = resolve_target(logits, target)
            score = logits.gather(1, t[:, None]).squeeze(1)
            (grads,) = torch.autograd.grad(score.sum(), acts)
        acts = acts.detach()
        weights = self.channel_weights(acts, grads)
        raw = F.relu(torch.einsum("nk,nkhw->nhw", weights, acts))
        up = F.interpolate(raw[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return Attribution(
            unit_scale(up.clamp_min(0)), t, score.detach(), logits.detach(), raw=raw,
            objective=f"class score via {layer}",
            scalars={"layer_height": float(acts.shape[-2]), "layer_width": float(acts.shape[-1])},
        )


grad_cam = GradCam()
technique(name="gradcam", title="Grad-CAM", family="attribution", params=GradCamParams, layer="spatial",
          default_layer="last_spatial", endpoint="saliency", endpoint_default=True, order=30,
          reference="Selvaraju et al. 2017",
          outputs=(Scalar("score", "the explained class's score (its logit)"),
                   Scalar("layer_height", "rows of the layer's map the heat map is upsampled from", integer=True),
                   Scalar("layer_width", "columns of the layer's map the heat map is upsampled from",
                          integer=True)))(grad_cam)
