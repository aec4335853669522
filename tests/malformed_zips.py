"""Zips that lie, built by patching the bytes of a valid one (the ``zipfile`` module refuses to write them).

Offsets are those of the PKWARE APPNOTE: a local file header (``PK\\3\\4``) has its flags at 6, method at 8,
CRC-32 at 14, compressed size at 18 and uncompressed size at 22; a central directory header (``PK\\1\\2``) has
them at 8, 10, 16, 20 and 24. Every builder patches both headers the same way, so the lie is consistent.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
END = b"PK\x05\x06"
# field -> (offset in the local header, offset in the central header, struct format)
FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "crc": (14, 16, "<I"), "compressed": (18, 20, "<I"),
          "size": (22, 24, "<I")}


def one_entry_zip(name: str, data: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        z.writestr(name, data)
    return buffer.getvalue()


def patched(archive: bytes, **values: int) -> bytes:
    """``archive`` (one entry) with the named header fields (see :data:`FIELDS`) set in both headers."""
    out = bytearray(archive)
    local, central = out.index(LOCAL), out.index(CENTRAL)
    for key, value in values.items():
        at_local, at_central, fmt = FIELDS[key]
        struct.pack_into(fmt, out, local + at_local, value)
        struct.pack_into(fmt, out, central + at_central, value)
    return bytes(out)


def field_of(archive: bytes, key: str) -> int:
    at_local, _, fmt = FIELDS[key]
    return int(struct.unpack_from(fmt, archive, archive.index(LOCAL) + at_local)[0])


def understated(name: str, data: bytes, declared: int, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An entry whose headers say it inflates to ``declared`` bytes (the CRC is that of the real data)."""
    return patched(one_entry_zip(name, data, compression), size=declared)


def flipped_crc(name: str, data: bytes) -> bytes:
    archive = one_entry_zip(name, data)
    return patched(archive, crc=field_of(archive, "crc") ^ 0xFFFFFFFF)


def encrypted_flag(name: str, data: bytes) -> bytes:
    archive = one_entry_zip(name, data)
    return patched(archive, flags=field_of(archive, "flags") | 0x1)


def with_method(name: str, data: bytes, method: int) -> bytes:
    """Method 9 is Deflate64, 99 WinZip AES: neither is readable by the standard library."""
    return patched(one_entry_zip(name, data), method=method)


def central_directory_only(name: str, data: bytes) -> bytes:
    """The central directory and end record alone: every entry points before the start of the file."""
    archive = one_entry_zip(name, data)
    return archive[archive.index(CENTRAL):]


def crc_of(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def liars(png: Callable[[], bytes]) -> dict[str, Callable[[], bytes]]:
    """The zips whose headers lie or that zipfile cannot read, by case name; ``png`` makes a real PNG."""
    return {
        "declares 1000 B, inflates to 100 MB": lambda: understated("a/zeros.png", b"\0" * 100_000_000, 1000),
        "png declares 100 B": lambda: understated("a/pic.png", png(), 100),
        "png declares 100 B, stored": lambda: understated("a/pic.png", png(), 100, zipfile.ZIP_STORED),
        "flipped crc": lambda: flipped_crc("a/pic.png", png()),
        "encrypted flag": lambda: encrypted_flag("a/pic.png", png()),
        "method 9 (deflate64)": lambda: with_method("a/pic.png", png(), 9),
        "method 99 (aes)": lambda: with_method("a/pic.png", png(), 99),
        "central directory only": lambda: central_directory_only("a/pic.png", png()),
    }
