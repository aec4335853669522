"""A model's sample images and how strongly they drive each channel: the neuron techniques' default channel is the
one most active on them (a channel that responds to what the model sees, rather than channel 0, which may be dead
and then renders as saturated noise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from convlens.hooks import capture
from convlens.models import LoadedModel

SAMPLES = 32  # images of the probe pass; enough for a stable ranking of the channels' means
_KEPT = "_convlens_channel_means"  # where a loaded model keeps its channels' means (layer → (C,))


def sample_images(loaded: LoadedModel, n: int = SAMPLES) -> Tensor:
    """(n, 3, S, S) in [0, 1]: held-out scenes of the built-in dataset for a model of its classes, else square
    crops of the natural sample photographs shipped with scikit-learn (and scikit-image when installed)."""
    from convlens.builtin import CLASSES

    size = loaded.preprocessing.input_size
    if tuple(loaded.classes) == tuple(CLASSES):
        from convlens.builtin.dataset import HELDOUT_SEED, render_batch

        batch, _, _ = render_batch(HELDOUT_SEED, n, size)
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    return _photo_crops(size, n)


def _photo_crops(size: int, n: int) -> Tensor:
    from convlens.corpus.datasets import natural_sources

    crops = []
    for _name, array in natural_sources():
        picture = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
        side = min(picture.shape[-2:])
        for scale in (1.0, 0.5):  # the whole square, then its quarters: objects at two sizes
            step = int(side * scale)
            for top in range(0, side - step + 1, step):
                for left in range(0, side - step + 1, step):
                    crop = picture[:, top:top + step, left:left + step]
                    crops.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False)[0])
    if not crops:  # no sample photographs installed: smooth noise still tells live channels from dead ones
        crops = list(F.interpolate(torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
                                   size=(size, size), mode="bilinear", align_corners=False))
    return torch.stack(crops[:n]).clamp(0, 1)


def channel_means(loaded: LoadedModel, layer: str) -> Tensor:
    """(C,) mean activation of each channel of ``layer`` over the sample images and all positions (computed once
    per loaded model, every spatial layer in one pass, and kept on it)."""
    known: dict[str, Tensor] = vars(loaded).get(_KEPT, {})
    if layer not in known:
        layers = [r.name for r in loaded.layers if r.is_spatial and len(r.output_shape) == 3]
        layers = layers if layer in layers else [*layers, layer]
        x = sample_images(loaded).to(loaded.device)
        with torch.no_grad(), capture(loaded.net, layers, detach=True) as seen:
            loaded.net(loaded.preprocessing.normalize(x))
        known = {name: seen[name].float().flatten(2).mean(dim=(0, 2)).cpu() for name in layers}
        object.__setattr__(loaded, _KEPT, known)  # a frozen dataclass: kept like its other derived values
    return known[layer]


def most_active_channel(loaded: LoadedModel, layer: str) -> int:
    """The channel of ``layer`` with the largest mean activation on the model's sample images."""
    return int(channel_means(loaded, layer).argmax())
