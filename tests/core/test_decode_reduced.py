"""Uploads are decoded at the size the model needs: headers checked first, JPEGs at a draft scale, others
reduced right after decoding, with the same model input as decoding at full size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convlens import images


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    channels = {"RGB": 3, "RGBA": 4}.get(mode, 1)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_a_large_jpeg_decodes_at_a_draft_scale_never_below_the_side_asked_for() -> None:
    data = encode(noise(4000, 3000), "JPEG", quality=80)
    full = images.open_image(data)
    drafted = images.open_image(data, short_side=256)
    assert full.pixels == 4000 * 3000 and drafted.pixels == 500 * 375  # 1/8 scale: 375 >= 256
    out = images.decode_opened(drafted)
    assert out.mode == "RGB" and out.size == (341, 256)


def test_a_large_png_is_reduced_at_once_and_preprocesses_exactly_like_the_full_image() -> None:
    src = noise(1500, 1000)
    reduced = images.decode_image(encode(src), short_side=100)
    assert reduced.size == (150, 100)
    direct = images.resize_and_crop(images.decode_image(encode(src)), 100, 90)
    assert np.array_equal(np.asarray(images.resize_and_crop(reduced, 100, 90)), np.asarray(direct))


def test_small_images_are_untouched_by_a_larger_side() -> None:
    src = noise(120, 80)
    assert np.array_equal(np.asarray(images.decode_image(encode(src), short_side=100)), np.asarray(src))


@pytest.mark.parametrize("mode,expect", [("P", (10, 200, 10)), ("I;16", (255, 255, 255)), ("1", (255, 255, 255)),
                                         ("RGBA", (255, 255, 255))])
def test_every_mode_is_reduced_with_its_colours(mode: str, expect: tuple[int, int, int]) -> None:
    if mode == "P":
        img = Image.new("P", (600, 400), 3)
        img.putpalette([0, 0, 0] * 3 + [10, 200, 10] + [0, 0, 0] * 252)
    elif mode == "RGBA":
        img = Image.new("RGBA", (600, 400), (255, 0, 0, 0))  # fully transparent: white once composited
    else:
        img = Image.new(mode, (600, 400), 4000 if mode == "I;16" else 1)
    out = images.decode_image(encode(img), short_side=40)
    assert out.size == (60, 40) and out.mode == "RGB" and out.getpixel((30, 20)) == expect


def test_exif_orientation_is_applied_to_the_reduced_image() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(noise(2000, 1000), "JPEG", exif=exif.tobytes())
    out = images.decode_image(data, short_side=128)
    assert out.size[0] < out.size[1] and min(out.size) == 128


def test_the_header_is_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = encode(Image.new("1", (6000, 5000)))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded a refused image"))
    with pytest.raises(images.ImageDecodeError, match="30000000 pixels"):
        images.open_image(bomb, short_side=64)
