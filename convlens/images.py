"""Image decoding, conversion, normalisation, colour maps and overlays.

Decoding is defensive: size limits are checked before pixels are decoded
(decompression bombs), EXIF orientation is applied, every mode becomes RGB
(transparency composited on white), and truncated files are rejected.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from convlens.colormaps import COLORMAP_ANCHORS

# Reading and checking an upload needs Pillow only: convlens.decoding (the dashboard uses it too); re-exported here.
from convlens.decoding import ALLOWED_FORMATS as ALLOWED_FORMATS
from convlens.decoding import ImageDecodeError as ImageDecodeError
from convlens.decoding import OpenedImage as OpenedImage
from convlens.decoding import decode_errors as _decode_errors
from convlens.decoding import open_image as open_image
from convlens.schema import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

Normalizer = Callable[[Tensor], Tensor]  # [0, 1] pixels → model input


def decode_opened(opened: OpenedImage) -> Image.Image:
    """Decode an :func:`open_image` result to RGB, EXIF orientation applied; when its shorter side is over
    ``opened.short_side`` it is reduced to that side at once (bilinear, as :func:`resize_and_crop` does, so a
    model's preprocessing of the reduced image equals that of the full one)."""
    img = opened.image
    with _decode_errors(MAX_IMAGE_PIXELS):
        orientation = img.getexif().get(EXIF_ORIENTATION)
        img.load()  # forces a full decode: truncated files fail here
        img = _reduced(img, opened.short_side)
        if orientation in ORIENTATION_FIXES:
            img = img.transpose(ORIENTATION_FIXES[orientation])
        img = to_rgb(img)
    if img is not opened.image:
        opened.image.close()  # its full-size pixels are freed now, not when the caller drops ``opened``
    return img


def decode_image(
    data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
    short_side: int | None = None,
) -> Image.Image:
    """Decode encoded image bytes to an RGB ``PIL.Image`` with EXIF orientation applied (reduced to
    ``short_side`` when given and smaller; see :func:`open_image`)."""
    return decode_opened(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels, short_side=short_side))


EXIF_ORIENTATION = 0x0112
ORIENTATION_FIXES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                     4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                     7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
RESIZABLE_MODES = ("RGB", "RGBA", "L", "LA", "I", "F")


def _reduced(img: Image.Image, short_side: int | None) -> Image.Image:
    """``img`` with its shorter side brought down to ``short_side`` (never enlarged), in a mode Pillow resizes
    with filtering (palette and 1-bit images would be resized nearest-neighbour, 16-bit ones clipped)."""
    width, height = img.size
    if short_side is None or min(width, height) <= short_side:
        return img
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode not in RESIZABLE_MODES:
        img = img.convert("RGB")
    scale = short_side / min(width, height)
    return img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparent pixels are composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size and arr.max() > 0 else 1.0
        return Image.fromarray((arr / hi * 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr - arr.min()) / max(float(np.ptp(arr)), 1e-12)
        return Image.fromarray((arr * 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def resize_and_crop(img: Image.Image, resize: int, crop: int) -> Image.Image:
    """Resize the shorter side to ``resize`` (bilinear, antialiased), then centre-crop ``crop``×``crop``."""
    width, height = img.size
    scale = resize / min(width, height)
    new_w, new_h = max(crop, round(width * scale)), max(crop, round(height * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def to_tensor(img: Image.Image) -> Tensor:
    """RGB ``PIL.Image`` → float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(to_rgb(img), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def to_pil(image: Tensor) -> Image.Image:
    """Tensor (3, H, W), (1, H, W) or (H, W) in [0, 1] → ``PIL.Image`` (RGB or L)."""
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if arr.ndim == 3 and arr.shape[0] == 1:  # a one-channel model's input-space picture
        arr = arr[0]
    if arr.ndim == 3:
        return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")
    if arr.ndim == 2:
        return Image.fromarray(arr.numpy(), "L")
    raise ValueError(f"expected (3, H, W) or (H, W), got {tuple(image.shape)}")


def encode_png(image: Tensor) -> bytes:
    """Tensor (3, H, W) or (H, W) in [0, 1] → PNG bytes."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(N, 3, H, W) or (3, H, W) in [0, 1] → model input. Never in place."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" mode


def luminance(x: Tensor) -> Tensor:
    """(..., 3, H, W) RGB → (..., 1, H, W) grey, the way PIL converts to mode "L"."""
    weights = torch.as_tensor(LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inverse of :func:`normalize`."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * s + m


def normalize_map(m: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each map of (N, H, W) to [0, 1] by its own min and max (a flat map becomes 0)."""
    flat = m.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    out = (flat - lo) / (hi - lo).clamp_min(eps)
    return out.view_as(m)


def gradient_image(grad: Tensor, spread: float = 0.15) -> Tensor:
    """Signed input gradient (N, 3, H, W) → displayable RGB in [0, 1].

    Centred at 0.5 grey with ``spread`` per standard deviation, the usual way
    guided-backprop images are shown (Springenberg et al. 2015; Chollet §9.4.2).
    """
    flat = grad.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
    return ((grad - mean) / std * spread + 0.5).clamp(0, 1)


# Colour maps as anchor colours, linearly interpolated (torch-free: the dashboard draws colour bars from them).
_COLORMAPS = COLORMAP_ANCHORS
COLORMAPS: tuple[str, ...] = tuple(_COLORMAPS)


def colormap(values: Tensor, name: str = "inferno") -> Tensor:
    """Map values in [0, 1] of shape (..., H, W) to RGB (..., 3, H, W)."""
    if name not in _COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; known: {', '.join(COLORMAPS)}")
    anchors = torch.tensor(_COLORMAPS[name], dtype=torch.float32, device=values.device)
    pos = values.float().clamp(0, 1) * (len(anchors) - 1)
    lo = pos.floor().long().clamp(max=len(anchors) - 2)
    frac = (pos - lo).unsqueeze(-1)
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac  # (..., H, W, 3)
    return rgb.movedim(-1, -3)


def overlay(image: Tensor, heatmap: Tensor, alpha: float = 0.5, cmap: str = "inferno") -> Tensor:
    """Blend a colour-mapped heat map (…, H, W) in [0, 1] over an image (…, 3, H, W) in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if heatmap.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"heat map {tuple(heatmap.shape)} and image {tuple(image.shape)} differ in size")
    return (1 - alpha) * image + alpha * colormap(heatmap, cmap).to(image.dtype)


def grid(tiles: Sequence[Tensor], columns: int, pad: int = 2, background: float = 1.0) -> Tensor:
    """Lay out (3, H, W) tiles of equal size row by row → (3, rows·(H+pad)-pad, columns·(W+pad)-pad)."""
    if not tiles:
        raise ValueError("no tiles")
    _, h, w = tiles[0].shape
    rows = -(-len(tiles) // columns)
    out = torch.full((3, rows * (h + pad) - pad, columns * (w + pad) - pad), background)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[:, r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = tile.expand(3, h, w)
    return out


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) with replicated borders; the kernel spans ±3σ."""
    if sigma <= 0:
        return x
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    out = torch.nn.functional.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = torch.nn.functional.conv2d(out, horizontal, groups=c)
    out = torch.nn.functional.pad(out, (0, 0, radius, radius), mode="replicate")
    return torch.nn.functional.conv2d(out, vertical, groups=c)


def diverging(values: Tensor) -> Tensor:
    """Signed (…, H, W) → RGB (…, 3, H, W): blue below zero, white at zero, red above, scaled by max |v|."""
    scale = values.abs().flatten(-2).amax(-1).clamp_min(1e-12)[..., None, None]
    v = (values / scale).clamp(-1, 1)
    pos, neg = v.clamp_min(0), (-v).clamp_min(0)
    return torch.stack([1 - neg, 1 - pos - neg, 1 - pos], dim=-3).clamp(0, 1)
