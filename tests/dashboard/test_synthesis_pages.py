"""The synthesis pages (Imagine, Fooling, Inversion, DeepDream, Texture, Style), driven with streamlit.testing
against a fake client: what reaches the API, that progress streams, that results and their network are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.http import ApiError
from tests.dashboard.conftest import FakeClient, run_family, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"


def page(name: str) -> str:
    return str(PAGES / f"{name}.py")


def captions(at: object) -> str:
    return " | ".join(img.caption for element in at.get("image") for img in element.proto.imgs)  # type: ignore[attr-defined]


def test_class_visualisation_sends_the_class_and_the_regularisers_and_shows_the_result() -> None:
    client = FakeClient()
    at = run_page(page("imagine"), client)
    assert not at.exception and not client.calls  # nothing runs before the button
    at.selectbox(key="classviz_target").set_value("dots").run()
    at.number_input(key="classviz_blur_every").set_value(0).run()
    at.button(key="classviz_run").click().run()
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if "technique" in c]
    assert call["technique"] == "classviz" and call["target"] == 9
    assert call["params"]["blur_every"] == 0 and call["params"]["decay"] == pytest.approx(0.01)
    assert call["job"].startswith("classviz-")
    assert "“dots” — the model says dots (97% for the target)" in captions(at)
    assert any("builtin weights" in c.value for c in at.caption)
    assert not at.get("progress")  # the progress panel is gone once the result is shown


def test_neuron_gallery_takes_the_layer_and_first_channel() -> None:
    client = FakeClient()
    at = run_page(page("imagine"), client)
    at.radio(key="unit_mode").set_value("A gallery of channels").run()
    at.selectbox(key="neuron_gallery_layer").set_value("features.2").run()
    at.number_input(key="gallery_first").set_value(4).run()
    at.button(key="neuron_gallery_run").click().run()
    [call] = [c for c in client.calls if "technique" in c]
    assert call["technique"] == "neuron_gallery" and call["layer"] == "features.2" and call["params"]["first"] == 4
    assert not at.exception


def test_fooling_shows_original_change_and_result_with_both_predictions() -> None:
    client = FakeClient()
    at = run_page(page("fooling"), client)
    at.selectbox(key="fooling_target").set_value("cross").run()
    at.button(key="fooling_run").click().run()
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if "technique" in c]
    assert call["technique"] == "fooling" and call["target"] == 3 and call["images"]["image"]
    shown = captions(at)
    assert "original: ring (90%)" in shown and "fooled: cross (60%)" in shown and "L∞ = 3.0/255" in shown
    [said] = [s.value for s in at.success]
    assert "after 4 steps" in said and "6 rounds then shrank the change to L∞ 3.0/255 (10 steps in all)" in said


def test_inversion_ladder_and_single_layer() -> None:
    client = FakeClient()
    at = run_page(page("inversion"), client)
    at.button(key="inversion_ladder_run").click().run()
    assert not at.exception
    at.radio(key="inversion_mode").set_value("One layer").run()
    at.selectbox(key="inversion_layer").set_value("features.14").run()
    at.button(key="inversion_run").click().run()
    names = [c["technique"] for c in client.calls if "technique" in c]
    assert names == ["inversion_ladder", "inversion"] and client.calls[-1]["layer"] == "features.14"
    assert not at.exception and not at.error


def test_texture_runs_gram_and_efros_leung_on_the_same_source() -> None:
    client = FakeClient()
    at = run_page(page("texture"), client)
    at.button(key="texture_run").click().run()
    at.button(key="efros_leung_run").click().run()
    calls = [c for c in client.calls if "technique" in c]
    assert [c["technique"] for c in calls] == ["texture", "efros_leung"]
    assert calls[0]["images"]["image"] == calls[1]["images"]["image"]
    assert not at.exception and not at.error


def test_style_blends_two_styles_with_weights_summing_to_one() -> None:
    client = FakeClient()
    at = run_page(page("style"), client)
    at.number_input(key="style_count").set_value(2).run()
    at.slider(key="blend_0").set_value(0.75).run()
    at.slider(key="blend_1").set_value(0.25).run()
    at.button(key="style_run").click().run()
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if "technique" in c]
    assert call["technique"] == "style" and set(call["images"]) == {"content", "style", "style_2"}
    assert call["params"]["style_blend"] == pytest.approx([0.75, 0.25])


def test_comparison_grid_shows_the_grid_cells_and_the_loss_chart() -> None:
    client = FakeClient()
    at = run_page(page("style"), client)
    at.text_input(key="grid_ratios").set_value("1, 0.1, 0.01").run()
    at.button(key="grid_run").click().run()
    assert not at.exception and not at.error
    [call] = [c for c in client.calls if "technique" in c]
    assert call["technique"] == "style_grid" and call["params"]["columns"] == "scale"
    assert call["params"]["ratios"] == "1, 0.1, 0.01"
    assert len(at.get("plotly_chart")) >= 1
    downloads = [b for b in at.get("download_button")]
    assert len(downloads) >= 1 + 9  # the whole grid, then each of the 3 x 3 cells


def test_a_refused_job_names_the_field() -> None:
    client = FakeClient(fail=ApiError(400, "must be in [1, 2000], got 5000", "params.steps"))
    at = run_family("synthesis", "deepdream", client)  # a technique with no page of its own: its family's page
    at.button(key="deepdream_run").click().run()
    assert not at.exception
    assert any("params.steps" in e.value for e in at.error)
