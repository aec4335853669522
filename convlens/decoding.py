"""Reading an upload's header and checking it decodes, with Pillow only (no torch, no NumPy): the server's
decoding (:mod:`convlens.images`, which re-exports these) and the dashboard's upload check share these rules.

Size limits are checked before pixels are decoded (decompression bombs), only the allow-listed formats are
tried, and every Pillow failure becomes one :class:`ImageDecodeError` whose message is meant for the user.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from convlens.schema import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

# What uploads may be: Pillow is told to try these decoders only (TIFF, ICO, PPM, EPS — the last hands its
# bytes to Ghostscript — and the rest are never tried on untrusted input).
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


class ImageDecodeError(ValueError):
    """The bytes are not a usable image (the message says why, for a 4xx response)."""


@dataclass(frozen=True)
class OpenedImage:
    """An upload whose header has been read and checked, nothing decoded yet (``Image.open`` is lazy).

    ``pixels`` is what decoding it will allocate: width × height at the size it decodes at, which for a JPEG
    larger than the size asked for is a DCT-scaled draft (1/2, 1/4 or 1/8)."""

    image: Image.Image
    pixels: int
    short_side: int | None  # reduce to this shorter side right after decoding (None: keep the full size)


def open_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
               short_side: int | None = None) -> OpenedImage:
    """Read ``data``'s header: a declared pixel count over ``max_pixels`` is refused before any pixel is decoded.
    With ``short_side``, a JPEG is set to decode at the smallest draft scale whose shorter side is still at least
    ``short_side``."""
    if not data:
        raise ImageDecodeError("image is empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes; the limit is {max_bytes} ({max_bytes / 1e6:.0f} MB)")
    with decode_errors(max_pixels):
        img: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
                                   f"({max_pixels / 1e6:g} Mpx)")
        if width < 1 or height < 1:
            raise ImageDecodeError("image has no pixels")
        if short_side is not None and min(width, height) >= 2 * short_side and img.format == "JPEG":
            scale = short_side / min(width, height)
            img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
    return OpenedImage(img, img.size[0] * img.size[1], short_side)


@contextmanager
def decode_errors(max_pixels: int) -> Iterator[None]:
    """Pillow's many failure types → one :class:`ImageDecodeError` with a message for the client."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format (send PNG, JPEG, WebP, BMP or GIF)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image is too large to decode safely: more than {max_pixels} pixels "
                               f"(the limit is {max_pixels / 1e6:g} Mpx)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"image could not be decoded (truncated or corrupt): {exc}") from exc


def check_decodes(data: bytes, *, short_side: int | None = None) -> tuple[str, int, int]:
    """(format, width, height) of an upload that passes :func:`open_image` and decodes completely (a truncated
    file fails here); a large JPEG is decoded at a reduced draft scale (``short_side``), enough to find truncation."""
    opened = open_image(data, short_side=short_side)
    fmt, (width, height) = str(opened.image.format), opened.image.size
    with decode_errors(MAX_IMAGE_PIXELS), opened.image as img:
        img.load()
    return fmt, width, height
