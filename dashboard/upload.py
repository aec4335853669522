"""Uploads are checked with the API's limits before the dashboard decodes them for a preview.

The server's own rules (:mod:`convlens.decoding`, Pillow only, no torch): at most ``MAX_UPLOAD_BYTES`` on the
wire, at most ``MAX_IMAGE_PIXELS`` decoded (read from the header, before any pixel is decoded), only the
allow-listed formats, and the file must decode completely (a truncated file fails here, not in a page).
"""

from __future__ import annotations

from convlens.decoding import ALLOWED_FORMATS, ImageDecodeError, check_decodes

__all__ = ["ALLOWED_FORMATS", "PREVIEW_SIDE", "UploadError", "check_upload"]

PREVIEW_SIDE = 1024  # large JPEGs are decoded at a reduced draft scale for the check (their header already passed)


class UploadError(ValueError):
    """The upload is refused; the message is meant for the user."""


def check_upload(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) of an acceptable upload; :class:`UploadError` otherwise."""
    try:
        return check_decodes(data, short_side=PREVIEW_SIDE)
    except ImageDecodeError as exc:
        raise UploadError(str(exc)) from None
