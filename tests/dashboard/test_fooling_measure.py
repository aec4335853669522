"""The Fooling page offers to measure the model's robustness curve when the answer carries none: a dataset, a
number of images, a button that runs the measurement as a server job; the measured curve is then drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convlens.schema import CorpusResponse
from tests.dashboard import canned
from tests.dashboard.conftest import FakeClient, report_job, run_page
from tests.dashboard.test_fooling_and_neuron_defaults import WithCurve

PAGE = str(Path(__file__).resolve().parents[2] / "dashboard" / "app_pages" / "fooling.py")
MEASURED = [[0.0, 3.0, 5.0, 9.0, 32.0], [0.0, 0.2, 0.4, 0.6, 0.6]]


class Measures(FakeClient):
    """Fooling answers without a curve; the dataset endpoint measures one (5 images) as a job."""

    def dataset(self, method: str, model: str = "builtin", layer: str | None = None,
                params: dict[str, Any] | None = None, image: bytes | None = None,
                on_job: Any = None) -> CorpusResponse:
        if method != "fooling_curve":
            return super().dataset(method, model, layer, params, image, on_job)
        self.calls.append({"method": method, "model": model, "params": dict(params or {}), "on_job": on_job})
        report_job(on_job, "curve")
        out = canned.sections(method, series={"robustness": MEASURED}, scalars={"robustness_images": 5.0})
        return self.answer(method, CorpusResponse(method, out["images"], out["scalars"], out["series"], out["items"],
                                                  1.0, "builtin", model, None))


def curve_traces(at: Any) -> list[dict[str, Any]]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    [curve] = [s for s in specs if s["layout"]["title"]["text"] == "Fooled within an L∞ budget"]
    return list(curve["data"])


def test_without_a_curve_the_page_measures_one_over_a_chosen_dataset_as_a_job_and_draws_it() -> None:
    client = Measures()
    at = run_page(PAGE, client)
    at.button(key="fooling_run").click().run()
    assert not at.exception and any("No curve is measured" in c.value for c in at.caption)
    assert at.selectbox(key="fooling_curve_dataset").options == ["shapes"]
    assert not [c for c in client.calls if c.get("method") == "fooling_curve"]  # nothing runs before the click
    at.number_input(key="fooling_curve_n").set_value(5)
    at.button(key="fooling_measure").click().run()
    assert not at.exception, at.exception
    [call] = [c for c in client.calls if c.get("method") == "fooling_curve"]
    assert call["params"]["dataset"] == "shapes" and call["params"]["n"] == 5 and call["on_job"] is not None
    measured = curve_traces(at)[0]
    assert measured["x"] == MEASURED[0] and measured["y"] == [100 * y for y in MEASURED[1]]
    assert measured["name"] == "5 images"
    assert not any("No curve is measured" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "fooling_measure"]  # measured: no more offer


def test_with_a_curve_in_the_answer_nothing_is_offered() -> None:
    at = run_page(PAGE, WithCurve())
    at.button(key="fooling_run").click().run()
    assert not at.exception and not [b for b in at.button if b.key == "fooling_measure"]
