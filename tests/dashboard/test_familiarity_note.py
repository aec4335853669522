"""Out of its depth (issue #27): where a page shows a prediction, it says when the input does not look like the
model's training data, in the model's own words and with the way out; and that a model without a held-out set is
not calibrated. Driven with streamlit.testing against the fake client (answers built from the declarations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from convlens import registry
from tests.dashboard.conftest import FakeClient, run_family, run_page

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTION_PAGE = str(ROOT / "dashboard" / "app_pages" / "attribution.py")
[PREDICT] = registry.of_family("prediction")
UNFAMILIAR = {"familiarity": 0.0, "familiarity_threshold": 0.029, "familiar": 0.0}
FAMILIAR = {"familiarity": 0.41, "familiarity_threshold": 0.029, "familiar": 1.0}


def pages(client: FakeClient) -> list[AppTest]:
    """The Attribution page and the prediction family's generic page, each run with ``client``."""
    return [run_page(ATTRIBUTION_PAGE, client), run_family("prediction", PREDICT.name, client)]


def warnings_of(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def captions_of(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("page", [0, 1], ids=["attribution", "prediction"])
def test_an_unfamiliar_input_gets_a_warning_with_the_model_and_the_way_out(page: int) -> None:
    at = pages(FakeClient(familiarity=dict(UNFAMILIAR)))[page]
    assert not at.exception
    [said] = [w for w in warnings_of(at) if "training data" in w]
    # the fake's model list: builtin is "built-in CNN" with 10 classes
    assert "does not look like the training data of `builtin` (built-in CNN)" in said
    assert "its prediction among its 10 classes means little" in said and "0.000" in said and "0.029" in said
    assert "`make weights`" in said and "resnet50" in said and "Models page" in said


@pytest.mark.parametrize("page", [0, 1], ids=["attribution", "prediction"])
def test_a_familiar_input_gets_no_warning(page: int) -> None:
    at = pages(FakeClient(familiarity=dict(FAMILIAR)))[page]
    assert not at.exception
    assert not [w for w in warnings_of(at) if "training data" in w]
    assert "Looks like the training data of `builtin`" in captions_of(at) and "0.410" in captions_of(at)


@pytest.mark.parametrize("page", [0, 1], ids=["attribution", "prediction"])
def test_a_model_without_a_calibration_says_so(page: int) -> None:
    at = pages(FakeClient())[page]
    assert not at.exception
    assert not [w for w in warnings_of(at) if "training data" in w]
    assert "Not calibrated" in captions_of(at)
