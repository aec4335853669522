"""What a number in a request may look like (docs/serving.md, "Numbers"): every integer and real param of every
endpoint is read by ``convlens.schema.as_int`` / ``as_float``; anything else is a 400 naming ``params.<name>``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from convlens.schema import SchemaError, as_float, as_int
from tests.handlers.conftest import call, json_row, make_context, png_bytes

NOT_INTEGERS = ["²", "--5", "١٢", "１２", " 5", "5 ", "5\n", "+5", "0x10", "1_000", "5.5", "", "9" * 41,
                True, False, 1.5, math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, [5], {"v": 5}]
NOT_NUMBERS = ["²", "--5", "١٫٥", " 0.5", "0.5\n", "nan", "NaN", "inf", "-Infinity", "1e999", "0x1p-2", "1_0", "",
               "9" * 65, True, math.nan, math.inf, 10**400, [0.5]]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
def test_only_ascii_integers_are_integers(value: Any) -> None:
    with pytest.raises(SchemaError) as info:
        as_int("params.window", value)
    assert info.value.field == "params.window"


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("5", 5), ("-5", -5), ("007", 7), (5.0, 5),
                                                 (b"12", 12), (2**63 - 1, 2**63 - 1)])
def test_ascii_integers_are_read(value: Any, expected: int) -> None:
    assert as_int("params.window", value) == expected


def test_an_integer_outside_its_bounds_names_the_field() -> None:
    with pytest.raises(SchemaError, match=r"\[1, 20\]") as info:
        as_int("params.topk", 21, 1, 20)
    assert info.value.field == "params.topk"


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_only_finite_ascii_decimals_are_numbers(value: Any) -> None:
    with pytest.raises(SchemaError) as info:
        as_float("params.alpha", value)
    assert info.value.field == "params.alpha"


@pytest.mark.parametrize(("value", "expected"), [(0.5, 0.5), (1, 1.0), ("0.5", 0.5), ("-1e-3", -0.001), (".5", 0.5),
                                                 ("5.", 5.0)])
def test_ascii_decimals_are_read(value: Any, expected: float) -> None:
    assert as_float("params.alpha", value) == expected


def handler(endpoint: str, cls: str = "handlers.attribution.AttributionHandler") -> Any:
    module, name = cls.rsplit(".", 1)
    h = getattr(__import__(module, fromlist=[name]), name)()
    h.initialize(make_context(endpoint, batch_size=1))
    return h


@pytest.mark.parametrize("value", ["²", "--5", "١٢"])
@pytest.mark.parametrize(("endpoint", "cls", "param"), [
    ("classify", "handlers.prediction.PredictionHandler", "topk"),
    ("saliency", "handlers.attribution.AttributionHandler", "topk"),
    ("occlusion", "handlers.attribution.AttributionHandler", "window"),
    ("occlusion", "handlers.attribution.AttributionHandler", "batch_size"),
    ("activations", "handlers.activations.ActivationsHandler", "max_channels"),
])
def test_unicode_digits_and_double_signs_are_a_400_naming_the_param(endpoint: str, cls: str, param: str,
                                                                    value: str) -> None:
    [(status, body)] = call(handler(endpoint, cls), [json_row(png_bytes(), params={param: value})])
    assert (status, body["field"]) == (400, f"params.{param}"), body


@pytest.mark.parametrize("value", ["²", "--5", "١٢", " 3", True, 1.5])
def test_synthesis_integers_are_a_400_naming_the_param(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       value: Any) -> None:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path))
    h = handler("classviz", "handlers.synthesis.SynthesisHandler")
    [(status, body)] = call(h, [json_row(params={"steps": value, "size": 16})])
    assert (status, body["field"]) == (400, "params.steps"), body


def test_a_texture_window_larger_than_the_source_names_the_window(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path))
    h = handler("texture", "handlers.synthesis.SynthesisHandler")
    params = {"method": "efros_leung", "window": 25, "size": 8, "source_size": 8}
    [(status, body)] = call(h, [json_row(png_bytes(), params=params)])
    assert (status, body["field"]) == (400, "params.window"), body
    [(status, body)] = call(h, [json_row(png_bytes(), params={**params, "window": 15})])
    assert status == 200 and body["images"]["result"], body


@pytest.mark.parametrize("indices", ["\u0661", "0,\u0662", "+1", "1_0", "0,,--1"])
def test_dataset_indices_are_ascii_integers_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indices: str) -> None:
    from convlens.corpus import datasets as store

    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path))
    store.builtin("few", 4)
    h = handler("dataset", "handlers.corpus.CorpusHandler")
    row = json_row(params={"action": "images", "name": "few", "indices": indices})
    [(status, body)] = call(h, [row])
    assert (status, body["field"]) == (400, "params.indices"), body
    [(status, body)] = call(h, [json_row(params={"action": "images", "name": "few", "indices": "0, 2"})])
    assert status == 200, body


@pytest.mark.parametrize("query", ["\u00b2", "\u0661"])
def test_the_neighbours_command_reads_only_ascii_indices(query: str) -> None:
    import argparse

    from convlens.corpus.cli import cmd_neighbours

    args = argparse.Namespace(image=query, dataset="few", k=2, space="both", metric="l2", layer=None,
                              model="builtin", random=False)
    with pytest.raises(FileNotFoundError, match="neither an image file nor a dataset index"):
        cmd_neighbours(args)
