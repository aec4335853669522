"""Zips whose headers lie (sizes, CRC, flags, methods, offsets) are refused as ``params.archive``, write nothing
and leave existing datasets alone."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from convlens.corpus import datasets as store
from tests import malformed_zips as mz


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


LIARS = mz.liars(png)


@pytest.mark.parametrize("build", LIARS.values(), ids=list(LIARS))
def test_a_lying_zip_is_refused_naming_the_archive_and_writes_nothing(data_dir: Path, tmp_path: Path,
                                                                       build: Callable[[], bytes]) -> None:
    existing = store.import_zip("existing", mz.one_entry_zip("x/a.png", png()))
    before, outside = tree(data_dir), tree(tmp_path)
    with pytest.raises(store.DatasetError) as info:
        store.import_zip("upload", build())
    assert info.value.field == "params.archive", info.value
    assert tree(data_dir) == before and tree(tmp_path) == outside
    assert store.open_dataset("existing").fingerprint == existing.fingerprint


def test_the_bytes_inflated_are_capped_whatever_the_header_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-entry limit holds for the bytes actually produced, even if the header declares more room."""
    data = png(128)
    archive = zipfile.ZipFile(io.BytesIO(mz.one_entry_zip("a/pic.png", data, zipfile.ZIP_DEFLATED)))
    info = archive.infolist()[0]
    assert store.read_entry(archive, info, len(data)) == data
    with pytest.raises(store.DatasetError, match="larger than") as refused:
        store.read_entry(archive, info, len(data) - 1)
    assert refused.value.field == "params.archive"


def test_an_honest_zip_still_imports(data_dir: Path) -> None:
    ds = store.import_zip("ok", mz.one_entry_zip("cats/a.png", png(), zipfile.ZIP_DEFLATED))
    assert len(ds) == 1 and ds.classes == ("cats",)
