"""``/predictions/dataset`` imports: a zip as base64, as a multipart file or as the raw body; lying zips are a
400 naming ``params.archive`` that writes nothing (no Java: TorchServe-shaped rows)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ts.context import RequestProcessor

from convlens.corpus import datasets as store
from tests import malformed_zips as mz
from tests.handlers.conftest import b64, json_row, make_context, png_bytes

pytestmark = pytest.mark.usefixtures("data_dir")  # a fresh datasets directory per test




@pytest.fixture(scope="module")
def handler():  # type: ignore[no-untyped-def]
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    return handler


def send(handler: Any, row: Any, content_type: str = "") -> tuple[int, dict[str, Any]]:
    """One request with its declared Content-Type, as TorchServe's worker sees it."""
    context = handler.context
    context.request_ids = {0: "req-0"}
    context.request_processor = [RequestProcessor({"Content-Type": content_type} if content_type else {})]
    [body] = handler.handle([row], context)
    return context.get_response_status(0)[0], json.loads(body)


def good_zip() -> bytes:
    return mz.one_entry_zip("cats/a.png", png_bytes(index=1), zipfile.ZIP_DEFLATED)


def datasets_now(data_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(data_dir)): p.stat().st_size for p in sorted(data_dir.rglob("*"))}


LIARS = mz.liars(png_bytes)


@pytest.mark.parametrize("build", LIARS.values(), ids=list(LIARS))
def test_a_lying_zip_is_a_400_naming_the_archive_and_nothing_is_written(handler, data_dir: Path,  # type: ignore[no-untyped-def]
                                                                         build: Callable[[], bytes]) -> None:
    store.import_zip("existing", good_zip())
    before = datasets_now(data_dir)
    status, body = send(handler, json_row(params={"action": "import", "name": "z", "archive": b64(build())}))
    assert status == 400 and body["field"] == "params.archive", body
    assert datasets_now(data_dir) == before


def multipart(**parts: bytes | str) -> dict[str, Any]:
    """multipart/form-data: every part (file or text) arrives as a bytearray."""
    return {k: bytearray(v.encode() if isinstance(v, str) else v) for k, v in parts.items()}


@pytest.mark.parametrize("row,content_type", [
    (multipart(archive=good_zip(), params=json.dumps({"action": "import", "name": "up"})), "multipart/form-data"),
    (multipart(archive=good_zip(), action="import", name="up"), "multipart/form-data"),
    (multipart(file=good_zip(), name="up"), "multipart/form-data"),
], ids=["file part archive + params", "file part archive + fields", "any file part"])
def test_a_zip_uploaded_as_a_file_or_as_the_body_is_imported(handler, data_dir: Path, row: dict[str, Any],  # type: ignore[no-untyped-def]
                                                             content_type: str) -> None:
    status, body = send(handler, row, content_type)
    assert status == 200, body
    assert [(d["name"], d["images"]) for d in body["items"]] == [("up", 1)]
    assert store.open_dataset("up").classes == ("cats",)


@pytest.mark.parametrize("row,content_type,field_name,says", [
    ({"body": bytearray(good_zip())}, "application/zip", "params.name", "-F archive=@pets.zip -F name=pets"),
    ({"body": bytearray(good_zip())}, "application/octet-stream", "params.name", "whole request body"),
    (multipart(archive=b"not a zip at all", name="up"), "multipart/form-data", "params.archive",
     "not a readable zip"),
    (multipart(archive=good_zip(), other=good_zip(), name="up"), "multipart/form-data", "other", "one zip"),
    (multipart(archive=good_zip(), name="up", action="remove"), "multipart/form-data", "archive", "action=import"),
    (multipart(archive=good_zip(), name="up", params=json.dumps({"name": "other"})), "multipart/form-data",
     "params.name", "twice"),
    (json_row(params={"action": "import", "name": "up"}), "", "params.archive", "-F archive=@pets.zip"),
], ids=["raw zip body", "raw octet-stream body", "file part not a zip", "two zips", "zip for another action",
        "two names", "nothing sent"])
def test_an_upload_that_cannot_be_imported_says_what_to_send(handler, data_dir: Path, row: dict[str, Any],  # type: ignore[no-untyped-def]
                                                             content_type: str, field_name: str, says: str) -> None:
    status, body = send(handler, row, content_type)
    assert status == 400 and body["field"] == field_name and says in body["error"], body
    assert not data_dir.exists() or datasets_now(data_dir) == {}


def test_an_uploaded_query_image_still_reaches_neighbours(handler, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    store.builtin("set", 6)
    row = multipart(image=png_bytes(index=2), params=json.dumps({"method": "neighbours", "dataset": "set", "k": 2}))
    status, body = send(handler, row, "multipart/form-data")
    assert status == 200 and {"query", "code", "pixel"} <= set(body["images"]), body
