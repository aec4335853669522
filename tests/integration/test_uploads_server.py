"""Through real TorchServe: a zip imported as a multipart file (a raw zip body is told what to send: the
frontend does not pass the query string on), a lying zip refused, and a request whose images decode to too
many pixels refused before any is decoded."""

from __future__ import annotations

import io
import zipfile

import requests
from PIL import Image

from serve import server
from tests import malformed_zips as mz
from tests.integration.test_torchserve import b64, post


def a_zip(image_png: bytes) -> bytes:
    return mz.one_entry_zip("rings/a.png", image_png, zipfile.ZIP_DEFLATED)


def test_a_zip_is_imported_as_a_multipart_file_and_a_raw_zip_body_is_told_what_to_send(
        torchserve: server.ServerInfo, image_png: bytes) -> None:
    r = post(torchserve, "dataset", files={"archive": ("rings.zip", a_zip(image_png), "application/zip")},
             data={"name": "up-form"})
    assert r.status_code == 200 and "up-form" in [d["name"] for d in r.json()["items"]], r.text
    # TorchServe 0.12 does not pass the query string to the handler: a raw body cannot carry the name
    r = requests.post(f"{torchserve.inference_url}/predictions/dataset", params={"action": "import", "name": "raw"},
                      data=a_zip(image_png), timeout=60,
                      headers={"Authorization": f"Bearer {torchserve.token}", "Content-Type": "application/zip"})
    assert r.status_code == 400 and r.json()["field"] == "params.name" and "-F archive=@" in r.json()["error"], r.text


def test_a_lying_zip_is_a_400_naming_the_archive(torchserve: server.ServerInfo, image_png: bytes) -> None:
    r = post(torchserve, "dataset", json={"params": {"action": "import", "name": "liar",
                                                     "archive": b64(mz.flipped_crc("a/b.png", image_png))}})
    assert r.status_code == 400 and r.json()["field"] == "params.archive", r.text
    listed = post(torchserve, "dataset", json={"params": {"action": "list"}}).json()["items"]
    assert "liar" not in [d["name"] for d in listed]


def test_images_decoding_to_too_many_pixels_are_a_400_naming_the_field(torchserve: server.ServerInfo) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 5000), (30, 90, 160)).save(buffer, format="PNG")
    r = post(torchserve, "codes", json={"images": [b64(buffer.getvalue())] * 16})  # 400 Mpx in ~0.5 MB
    assert r.status_code == 400 and r.json()["field"] == "images" and "megapixels" in r.json()["error"], r.text
