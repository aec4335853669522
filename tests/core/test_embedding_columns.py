"""The embedding's compact per-image columns (issue #28, a million images): typed arrays as base64 that decode to
exactly what the codes and the map hold, the class names once, a channel's activation, the files of a selection."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pytest

from client.results import Result
from convlens import registry
from convlens.corpus import datasets as store
from convlens.corpus.codes import dataset_codes
from convlens.models import load_model
from convlens.outputs import Column
from convlens.pipeline import run
from convlens.schema import CorpusResponse, SchemaError


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "data"))
    store.builtin("set", 24)
    return tmp_path


def response(out: object) -> CorpusResponse:
    """An answer as the client reads it (the JSON the handler sends, keeping the response type's fields)."""
    body = out.to_json(lambda image: "iVBORw0KGgo=")  # type: ignore[attr-defined]
    jsonschema.validate(body, registry.get("embedding").describe()["response_schema"])
    return CorpusResponse.from_json({k: body[k] for k in CorpusResponse.__dataclass_fields__ if k in body}
                                    | {"elapsed_ms": 0.0, "weights": "builtin"})


def test_compact_columns_decode_to_the_codes_and_the_map() -> None:
    loaded = load_model("builtin")
    params = {"dataset": "set", "projection": "pca"}
    [full] = run(loaded, "embedding", [{}], params=params)
    [compact] = run(loaded, "embedding", [{}], params={**params, "compact": True, "channel": 3})
    result = Result(response(compact), registry.get("embedding").declared)
    x, y = result.column("x"), result.column("y")
    assert x.dtype == np.float32 and np.allclose(np.stack([x, y], 1), np.asarray(full.points), atol=1e-6)
    ds = store.open_dataset("set")
    codes = dataset_codes(loaded, ds)
    assert result.column("label").dtype == np.uint16 and (result.column("label") == ds.targets).all()
    assert (result.column("predicted") == codes.predicted).all()
    assert np.array_equal(result.column("confidence"), codes.confidence)
    assert np.array_equal(result.column("activation"), np.asarray(codes.vectors[:, 3], dtype=np.float32))
    names = {(row["column"], row["code"]): row["name"] for row in result.items() if "column" in row}
    expected = [ds.classes[t] == loaded.label(p) for t, p in zip(ds.targets, codes.predicted, strict=True)]
    assert result.column("correct").tolist() == [int(e) for e in expected]
    assert all(names["label", int(t)] == item["label"] for t, item in zip(ds.targets, full.items, strict=True))
    assert all(names["predicted", int(p)] == item["predicted"]
               for p, item in zip(codes.predicted, full.items, strict=True))
    assert compact.points is None and not any("file" in row for row in compact.items)
    assert compact.scalars["fitted"] == 24
    # the files of a selection: a lookup, without the columns
    [files] = run(loaded, "embedding", [{}], params={**params, "compact": True, "files": "5,0"})
    assert [(row["index"], row["file"]) for row in files.items if "index" in row] == [(5, ds.files[5]),
                                                                                    (0, ds.files[0])]
    assert not files.columns and response(files).columns == {}


def test_a_channel_or_files_outside_the_dataset_are_refused_naming_the_field() -> None:
    loaded = load_model("builtin")
    for extra, field in (({"channel": 10_000}, "params.channel"), ({"channel": -1}, "params.channel"),
                         ({"files": "24"}, "params.files"), ({"files": "1,x"}, "params.files"),
                         ({"files": ",".join(["1"] * 100_001)}, "params.files")):
        with pytest.raises(SchemaError) as info:
            run(loaded, "embedding", [{}], params={"dataset": "set", "projection": "pca", **extra})
        assert info.value.field == field, extra


def test_a_column_is_declared_with_its_element_type() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Column("x", "a coordinate", kind="float64")  # type: ignore[arg-type]
    schema = registry.get("embedding").describe()["response_schema"]["properties"]["columns"]
    assert schema["properties"]["label"]["x-dtype"] == "<u2" and schema["properties"]["x"]["x-dtype"] == "<f4"
    assert set(schema["properties"]) == {"x", "y", "label", "predicted", "correct", "confidence", "activation"}
