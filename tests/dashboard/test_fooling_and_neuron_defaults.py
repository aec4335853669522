"""Issue #27, the first ten minutes on the Fooling and Classes-and-neurons pages: the defaults ask for what works
(the easiest target, a budget the measured curve says fools; a responding channel of a conv stage), the curve is
drawn beside the fooled image, the title matches the sidebar, and Stop sits between the progress bar and the
preview rather than beside (and over) it."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

from client.http import LayerCatalogue, LayerRow, Progress
from convlens.schema import SynthesisResponse
from dashboard.app_pages import fooling, imagine
from tests.dashboard.canned import CLASSES, b64png
from tests.dashboard.conftest import FakeClient, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"
CURVE = [[0.0, 2.0, 6.0, 12.0, 32.0], [0.0, 0.25, 0.5, 1.0, 1.0]]


class BuiltinLayers(FakeClient):
    """The built-in model's catalogue as the server sends it: the 1×1 pooling output is spatial and comes last."""

    def layers(self, model: str) -> LayerCatalogue:
        rows = [LayerRow("features.0", "Conv2d", (32, 32, 32), 7, 2, True, True),
                LayerRow("features.17", "Conv2d", (128, 8, 8), 89, 8, True, True),
                LayerRow("features.19", "ReLU", (128, 8, 8), 89, 8, True),
                LayerRow("features", "Sequential", (128, 8, 8), 89, 8, True),
                LayerRow("pool", "AdaptiveAvgPool2d", (128, 1, 1), 89, 89, True)]
        return LayerCatalogue(model, 64, "features", rows, CLASSES, "features.0")


class WithCurve(FakeClient):
    """Fooling answers that carry a measured curve (4 images)."""

    def synthesis(self, *args: Any, **kwargs: Any) -> SynthesisResponse:
        response = super().synthesis(*args, **kwargs)
        return dataclasses.replace(response, series={**response.series, "robustness": CURVE},
                                   scalars={**response.scalars, "robustness_images": 4.0, "easiest": 1.0})


class StopsMidRun(FakeClient):
    """A job that reports one step and then never answers (the page is left as it is while a job runs)."""

    def synthesis(self, *args: Any, on_progress: Any = None, **kwargs: Any) -> SynthesisResponse:
        super().synthesis(*args, **kwargs)  # records the call
        on_progress(Progress(3, 10, base64.b64decode(b64png((200, 0, 0)))))
        raise RuntimeError("still running")


def test_the_page_title_is_the_sidebar_s() -> None:
    at = run_page(str(PAGES / "imagine.py"), FakeClient())
    assert not at.exception and [h.value for h in at.header] == [imagine.TITLE] == ["Classes and neurons"]


def test_the_default_neuron_is_a_responding_channel_of_the_last_conv_stage() -> None:
    client = BuiltinLayers()
    at = run_page(str(PAGES / "imagine.py"), client)
    layer = at.selectbox(key="neuron_layer").value
    kinds = {row.name: row.type for row in client.layers("builtin").layers}
    assert layer == "features" and "Pool" not in kinds[layer]  # the catalogue's Grad-CAM layer, not the last row
    assert at.number_input(key="neuron_channel").value is None  # empty: the server's most active channel
    at.button(key="neuron_run").click().run()
    [call] = [c for c in client.calls if c.get("technique") == "neuron"]
    assert call["layer"] == "features" and "channel" not in call["params"] and not at.exception
    shown = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any("(the most active on the model's sample images)" in c for c in shown)


def test_a_chosen_channel_is_sent() -> None:
    client = BuiltinLayers()
    at = run_page(str(PAGES / "imagine.py"), client)
    at.number_input(key="neuron_channel").set_value(5).run()
    at.button(key="neuron_run").click().run()
    [call] = [c for c in client.calls if c.get("technique") == "neuron"]
    assert call["params"]["channel"] == 5


def _walk(node: Any, parents: tuple[Any, ...] = ()) -> list[tuple[Any, tuple[Any, ...]]]:
    found = [(node, parents)]
    for child in getattr(node, "children", {}).values():
        found += _walk(child, (*parents, node))
    return found


def test_stop_sits_under_the_progress_bar_and_above_the_preview() -> None:
    at = run_page(str(PAGES / "fooling.py"), StopsMidRun())
    at.button(key="fooling_run").click().run()
    nodes = _walk(at.main)
    [(bar, bar_parents)] = [(n, p) for n, p in nodes if n.type == "progress"]
    [(stop, stop_parents)] = [(n, p) for n, p in nodes if n.type == "button" and n.key == "fooling_stop"]
    [(preview, preview_parents)] = [(n, p) for n, p in nodes if n.type == "image"]
    # one block holds all three, one above the other: no column puts the preview beside (and under) Stop
    assert bar_parents[-1] is stop_parents[-1] is preview_parents[-1]
    order = [n for n, _ in nodes]
    assert order.index(bar) < order.index(stop) < order.index(preview)


def test_the_default_fooling_run_aims_for_the_easiest_class_within_the_default_budget() -> None:
    client = WithCurve()
    at = run_page(str(PAGES / "fooling.py"), client)
    assert at.selectbox(key="fooling_target").value == fooling.EASIEST
    at.button(key="fooling_run").click().run()
    [call] = [c for c in client.calls if "technique" in c]
    assert call["target"] is None and call["params"]["epsilon"] == 16.0 and not at.exception
    assert "the easiest class for this image" in at.success[0].value


def test_the_measured_curve_is_drawn_beside_the_fooled_image_with_the_budget_and_this_image() -> None:
    at = run_page(str(PAGES / "fooling.py"), WithCurve())
    at.button(key="fooling_run").click().run()
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    [curve] = [s for s in specs if s["layout"]["title"]["text"] == "Fooled within an L∞ budget"]
    [held_out, this_image] = curve["data"]
    assert held_out["x"] == CURVE[0] and held_out["y"] == [100 * y for y in CURVE[1]]
    assert held_out["line"]["shape"] == "hv"
    assert this_image["x"] == [3.0] and this_image["y"] == [25.0]  # the canned L∞ 3/255: 1 of 4 images within it
    assert [shape["x0"] for shape in curve["layout"]["shapes"]] == [16.0]  # the budget asked for
    # the loss chart keeps to the steps
    assert all("robustness" not in (trace.get("name") or "") for s in specs if s is not curve for trace in s["data"])
    assert any("100% fooled within this budget" in c.value for c in at.caption)


def test_without_a_measured_curve_the_page_says_so() -> None:
    at = run_page(str(PAGES / "fooling.py"), FakeClient())
    at.button(key="fooling_run").click().run()
    assert not at.exception and any("No curve is measured" in c.value for c in at.caption)
