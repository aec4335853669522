"""The robustness curve measured through /predictions/dataset (params.method = fooling_curve; no Java): a small
request answers at once, keeps the curve under the data dir, and a bad param is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from convlens.techniques.corpus.fooling_curve import FoolingCurveParams
from convlens.techniques.synthesis import robustness
from tests.handlers.conftest import call, json_row, make_context


@pytest.fixture(scope="module")
def dataset_handler():  # type: ignore[no-untyped-def]
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    return handler


def test_a_small_measurement_answers_the_curve_and_keeps_it(dataset_handler, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    [(status, _)] = call(dataset_handler, [json_row(params={"action": "builtin", "name": "set", "n": 4})])
    assert status == 200
    assert not FoolingCurveParams(dataset="set", n=2).runs_long() and FoolingCurveParams(dataset="set").runs_long()
    [(status, body)] = call(dataset_handler, [json_row(params={"method": "fooling_curve", "dataset": "set", "n": 2,
                                                               "budgets": [16, 32], "steps": 10})])
    assert status == 200, body
    budgets, shares = body["series"]["robustness"]
    assert budgets[0] == 0.0 and budgets[-1] == 32.0 and shares[0] == 0.0 and shares == sorted(shares)
    assert body["scalars"]["robustness_images"] == 2 and body["scalars"]["kept"] == 1
    assert len(list((data_dir / robustness.MEASURED_DIR).glob("*.json"))) == 1


@pytest.mark.parametrize("params,field_name", [
    ({"n": 0}, "params.n"), ({"budgets": [100]}, "params.budgets"), ({"dataset": "missing"}, "params.dataset")])
def test_a_bad_param_is_named(dataset_handler, params, field_name: str) -> None:  # type: ignore[no-untyped-def]
    [(status, answer)] = call(dataset_handler, [json_row(params={"method": "fooling_curve", "dataset": "set",
                                                                 **params})])
    assert status == 400 and answer["field"] == field_name, answer
