"""Safe decoding, conversions, colour maps and overlays."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from convlens import images


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_decodes_png_and_jpeg_to_rgb() -> None:
    src = Image.new("RGB", (7, 5), (10, 200, 30))
    assert images.decode_image(encode(src)).getpixel((3, 2)) == (10, 200, 30)
    jpeg = images.decode_image(encode(src, "JPEG", quality=95))
    assert jpeg.size == (7, 5) and jpeg.mode == "RGB"


def test_transparency_is_composited_on_white_and_grey_becomes_rgb() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = images.decode_image(encode(rgba))
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 1)) == (255, 255, 255)
    grey16 = Image.new("I;16", (3, 3), 4000)
    assert images.decode_image(encode(grey16)).mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    src = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = images.decode_image(encode(src, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not a recognised image"),
        (encode(Image.new("RGB", (64, 64), (1, 2, 3)))[:60], "truncated or corrupt"),
    ],
)
def test_bad_bytes_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(images.ImageDecodeError, match=message):
        images.decode_image(data)


def test_decompression_bombs_are_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (6000, 5000)))  # 30 Mpx, a few kB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(images.ImageDecodeError, match="30000000 pixels"):
        images.decode_image(bomb)
    with pytest.raises(images.ImageDecodeError, match="limit"):
        images.decode_image(encode(Image.new("RGB", (10, 10))), max_bytes=10)


def test_resize_and_crop_keeps_the_centre() -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (90, 0, 110, 100))  # a white vertical bar in the middle
    out = images.to_tensor(images.resize_and_crop(img, 50, 40))
    assert out.shape == (3, 40, 40)
    assert float(out[:, :, 20].mean()) > 0.9 and float(out[:, :, 0].mean()) < 0.1


def test_normalize_roundtrip_and_no_in_place_change() -> None:
    x = torch.rand(2, 3, 4, 4)
    before = x.clone()
    y = images.normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    torch.testing.assert_close(y[:, 1], (x[:, 1] - 0.4) / 0.25)
    torch.testing.assert_close(images.denormalize(y, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), x)
    assert torch.equal(x, before)


def test_colormap_endpoints_overlay_and_png_roundtrip() -> None:
    heat = torch.tensor([[0.0, 1.0]])
    gray = images.colormap(heat, "gray")
    torch.testing.assert_close(gray[:, 0, 0], torch.zeros(3))
    torch.testing.assert_close(gray[:, 0, 1], torch.ones(3))
    inferno = images.colormap(heat, "inferno")
    assert float(inferno[:, 0, 0].sum()) < 0.1 and float(inferno[:, 0, 1].sum()) > 2.5  # dark → bright
    image = torch.rand(3, 1, 2)
    torch.testing.assert_close(images.overlay(image, heat, alpha=0.0), image)
    torch.testing.assert_close(images.overlay(image, heat, alpha=1.0, cmap="gray"), gray)
    with pytest.raises(ValueError, match="unknown colour map"):
        images.colormap(heat, "rainbowish")
    png = images.encode_png(torch.ones(3, 5, 6) * 0.5)
    assert Image.open(io.BytesIO(png)).size == (6, 5)


def test_map_scaling_helpers() -> None:
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    torch.testing.assert_close(images.normalize_map(m), torch.tensor([[[0.0, 0.5], [0.25, 1.0]]]))
    grad = torch.randn(1, 3, 8, 8)
    shown = images.gradient_image(grad)
    assert shown.shape == grad.shape and 0 <= float(shown.min()) and float(shown.max()) <= 1
    assert abs(float(shown.mean()) - 0.5) < 0.05
