"""Names that are not what they seem (issue 26 §4): every name, id, layer, label, style and file name is checked
over its whole length. A trailing newline (``$`` matches before one), a NUL and Unicode look-alikes (Cyrillic
'а', fullwidth digits) are refused, or made plain ASCII where a name is derived from an upload. In process."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from convlens.corpus import datasets as store
from convlens.schema import SchemaError, check_model_name, job_id
from tests.handlers.conftest import call, json_row, make_context, no_imagenet_weights, png_bytes  # noqa: F401

CYRILLIC_A = "\u0430"  # looks like 'a'
FULLWIDTH_1 = "\uff11"  # looks like '1'


def disguised(name: str) -> list[str]:
    """``name`` with a trailing newline, an embedded NUL, a Cyrillic 'а' for its first 'a' (or appended) and a
    fullwidth digit."""
    lookalike = name.replace("a", CYRILLIC_A, 1) if "a" in name else name + CYRILLIC_A
    return [name + "\n", name[:1] + "\0" + name[1:], lookalike, name + FULLWIDTH_1]


def handler(endpoint: str, cls: str) -> Any:
    module, name = cls.rsplit(".", 1)
    h = getattr(__import__(module, fromlist=[name]), name)()
    h.initialize(make_context(endpoint, batch_size=1))
    return h


@pytest.fixture(autouse=True)
def own_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "datasets"))
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path


@pytest.mark.parametrize("name", disguised("data1"), ids=repr)
def test_dataset_names(name: str) -> None:
    with pytest.raises(SchemaError):
        store.check_name(name, "params.name")
    [(status, body)] = call(handler("dataset", "handlers.corpus.CorpusHandler"),
                            [json_row(params={"action": "builtin", "name": name, "n": 2})])
    assert (status, body["field"]) == (400, "params.name"), body
    assert store.list_datasets() == []


def test_a_folder_with_a_disguised_name_is_not_listed_as_a_dataset(own_dirs: Path) -> None:
    store.builtin("plain", 2)
    (store.data_dir() / ("pl" + CYRILLIC_A + "in")).mkdir()
    (store.data_dir() / "plain\n").mkdir()
    assert [d.name for d in store.list_datasets()] == ["plain"]


@pytest.mark.parametrize("name", disguised("victim1"), ids=repr)
def test_job_ids(name: str) -> None:
    with pytest.raises(SchemaError):
        job_id(name)
    h = handler("classviz", "handlers.synthesis.SynthesisHandler")
    [(status, body)] = call(h, [json_row(cancel=name)])
    assert (status, body["field"]) == (400, "cancel"), body
    [(status, body)] = call(h, [json_row(job=name, params={"steps": 1, "size": 16})])
    assert (status, body["field"]) == (400, "job"), body


@pytest.mark.parametrize("name", disguised("builtin"), ids=repr)
def test_model_names(name: str) -> None:
    with pytest.raises(SchemaError):
        check_model_name(name)
    h = handler("classify", "handlers.prediction.PredictionHandler")
    [(status, body)] = call(h, [json_row(png_bytes(), model=name)])
    assert (status, body["field"]) == (400, "model"), body


@pytest.mark.parametrize("name", disguised("features.0"), ids=repr)
def test_layer_names(name: str) -> None:
    h = handler("saliency", "handlers.attribution.AttributionHandler")
    [(status, body)] = call(h, [json_row(png_bytes(), layer=name, params={"method": "gradcam"})])
    assert (status, body["field"]) == (400, "layer"), body


@pytest.mark.parametrize("label", disguised("triangle"), ids=repr)
def test_class_labels(label: str) -> None:
    [(status, body)] = call(handler("classify", "handlers.prediction.PredictionHandler"),
                            [json_row(png_bytes(), target=label)])
    assert (status, body["field"]) == (400, "target"), body


@pytest.mark.parametrize("style", disguised("hubble"), ids=repr)
def test_style_names(style: str) -> None:
    h = handler("stylize", "handlers.synthesis.SynthesisHandler")
    for params, field in (({"style": style}, "params.style"), ({"blend": {style: 1.0}}, "params.blend")):
        [(status, body)] = call(h, [json_row(content=_b64(png_bytes()), params={**params, "size": 32})])
        assert (status, body["field"]) == (400, field), body


@pytest.mark.parametrize("label", [n for n in disguised("cat") if "\0" not in n], ids=repr)
def test_file_names_in_archives_become_plain_ascii(label: str) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{label}/img{FULLWIDTH_1}.png", png_bytes())
    ds = store.import_zip("zipped", archive.getvalue())
    assert all(part.isascii() and part.isprintable() for f in ds.files for part in f.split("/")), ds.files
    assert all(c.isascii() and c.isprintable() for c in ds.classes), ds.classes


def test_a_file_name_with_a_nul_in_an_archive_is_refused() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/a.png", png_bytes())
    raw = archive.getvalue().replace(b"cat/a.png", b"cat/\0.png")
    with pytest.raises(SchemaError) as info:
        store.import_zip("zipped", raw)
    assert info.value.field == "params.archive" and store.list_datasets() == []


@pytest.mark.parametrize("name", disguised("classify"), ids=repr)
def test_the_client_refuses_disguised_endpoint_names(name: str) -> None:
    from client.http import ConvLensClient

    with pytest.raises(ValueError, match="not an endpoint name"):
        ConvLensClient("http://127.0.0.1:9").post(name, {})


@pytest.mark.parametrize("raw", ["16m\n", "1\u0662m", "16\uff4d"], ids=repr)
def test_the_gate_body_limit_is_a_whole_match(raw: str) -> None:
    from serve import gate

    with pytest.raises(gate.GateError):
        gate.Limits.from_env(max_body=raw)


@pytest.mark.parametrize("key", ["k" * 20 + "\nx", "k" * 19 + CYRILLIC_A, "k" * 19 + FULLWIDTH_1], ids=repr)
def test_the_gate_key_is_a_whole_match(key: str) -> None:
    from serve import gate

    with pytest.raises(gate.GateError):
        gate.check_key(key)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")
