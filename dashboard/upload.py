"""Uploads are checked with the API's limits before the dashboard decodes them for a preview.

Pillow only (no torch): the same rules as ``convlens.images.decode_image`` — at most
``MAX_UPLOAD_BYTES`` on the wire, at most ``MAX_IMAGE_PIXELS`` decoded (read from the header, before any
pixel is decoded), only the allow-listed formats, and the file must decode completely (a truncated
file fails here, not in a page). A test keeps ``ALLOWED_FORMATS`` equal to the core's.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from convlens.schema import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
PREVIEW_SIDE = 1024  # JPEGs are decoded at a reduced scale for the check (their header already passed)


class UploadError(ValueError):
    """The upload is refused; the message is meant for the user."""


def check_upload(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) of an acceptable upload; :class:`UploadError` otherwise."""
    if not data:
        raise UploadError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                fmt = str(img.format)
                width, height = img.size
                if width < 1 or height < 1:
                    raise UploadError("the image has no pixels")
                if width * height > MAX_IMAGE_PIXELS:
                    raise UploadError(f"the image is {width}×{height} = {width * height / 1e6:.0f} Mpx; "
                                      f"the limit is {MAX_IMAGE_PIXELS / 1e6:g} Mpx")
                if fmt == "JPEG":
                    img.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))
                img.load()  # the whole file: a truncated one fails here
    except UploadError:
        raise
    except UnidentifiedImageError:
        raise UploadError("not a supported image: upload a PNG, JPEG, WebP, BMP or GIF file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"the image is too large to decode safely (the limit is {MAX_IMAGE_PIXELS / 1e6:g} Mpx)") \
            from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(f"the image could not be decoded (truncated or corrupt: {exc})") from None
    return fmt, width, height
