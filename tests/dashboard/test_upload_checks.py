"""Uploads are checked with the API's limits before the dashboard decodes them (no tracebacks, no memory kept)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from convlens.images import ALLOWED_FORMATS as CORE_FORMATS
from convlens.schema import MAX_UPLOAD_BYTES
from dashboard import upload, widgets


def encoded(fmt: str = "PNG", size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def bomb(side: int) -> bytes:
    data = bytearray(encoded("PNG", 1))
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


GOOD = encoded()
REFUSED = {
    "empty": (b"", "empty"),
    "text renamed .png": (b"this is a text file, renamed to picture.png\n" * 20, "not a recognised image format"),
    "truncated png": (encoded("PNG", 256)[:400], "truncated or corrupt"),
    "truncated jpeg": (encoded("JPEG", 256)[:300], "truncated or corrupt"),
    "20000x20000 bomb": (bomb(20_000), "25 Mpx"),
    "13000x13000 bomb": (bomb(13_000), "25 Mpx"),
    "6000x6000 header": (bomb(6_000), "(25 Mpx)"),
    "tiff": (encoded("TIFF"), "not a recognised image format"),
    "ico": (encoded("ICO"), "not a recognised image format"),
    "over 10 MB": (b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_UPLOAD_BYTES, "(10 MB)"),
}


def test_the_dashboard_allows_the_formats_the_api_allows() -> None:
    assert upload.ALLOWED_FORMATS is CORE_FORMATS


def test_the_dashboard_checks_with_the_servers_decoding_not_its_own() -> None:
    """No second decoder to keep in step: the check is ``convlens.decoding``'s (Pillow only, torch-free)."""
    source = Path(upload.__file__).read_text()
    assert "from convlens.decoding import" in source and "PIL" not in source


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_good_uploads_pass(fmt: str) -> None:
    assert upload.check_upload(encoded(fmt))[1:] == (64, 64)


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_uploads_are_refused_with_a_message(name: str) -> None:
    data, phrase = REFUSED[name]
    with pytest.raises(upload.UploadError) as exc:
        upload.check_upload(data)
    assert phrase in str(exc.value)


def test_a_bomb_is_refused_without_allocating_its_pixels() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(upload.UploadError):
            upload.check_upload(bomb(13_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@dataclass
class FakeUpload:
    name: str
    data: bytes

    def getvalue(self) -> bytes:
        return self.data


@dataclass
class FakeStreamlit:
    upload: FakeUpload | None
    errors: list[str] = field(default_factory=list)

    def radio(self, *args: Any, **kwargs: Any) -> str:
        return "Upload"

    def file_uploader(self, *args: Any, **kwargs: Any) -> FakeUpload | None:
        return self.upload

    def error(self, message: str, **kwargs: Any) -> None:
        self.errors.append(message)


def test_choose_image_shows_an_error_and_returns_nothing_for_a_bad_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeStreamlit(FakeUpload("cat.png", b"not really a png"))
    monkeypatch.setattr(widgets, "st", fake)
    assert widgets.choose_image() is None
    assert len(fake.errors) == 1 and "cat.png cannot be used" in fake.errors[0]


def test_choose_image_passes_a_good_upload_through(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeStreamlit(FakeUpload("ok.png", GOOD))
    monkeypatch.setattr(widgets, "st", fake)
    assert widgets.choose_image() == ("ok.png", GOOD)
    assert fake.errors == []
