"""The Attribution page and the sidebar, driven with streamlit.testing against a fake client."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from client.http import ApiError
from tests.dashboard.conftest import FakeClient
from tests.dashboard.conftest import run_page as run_on

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "app_pages" / "attribution.py")
APP = str(ROOT / "dashboard" / "streamlit_app.py")


def run_page(client: FakeClient, **state: object) -> AppTest:
    return run_on(PAGE, client, **state)


def test_page_shows_top5_chart_every_attribution_technique_and_downloads() -> None:
    client = FakeClient()
    at = run_page(client)
    assert not at.exception
    assert [c["endpoint"] for c in client.calls] == ["classify", "saliency", "saliency", "saliency", "occlusion"]
    assert [c["params"].get("method") for c in client.calls[1:]] == ["vanilla", "guided", "gradcam", None]
    gradcam = client.calls[3]
    assert gradcam["layer"] == "features" and gradcam["params"]["alpha"] == 1.0
    assert all(c["layer"] is None for c in client.calls[1:3] + client.calls[4:])
    assert client.calls[4]["params"] == {"window": 8, "fill": "mean", "alpha": 1.0}
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("download_button")) == 4
    assert any("Why “cross”?" in h.value for h in at.subheader)
    assert len(at.get("image")) == 7  # the input, four overlays, guided's gradient and occlusion's logit drop
    assert not at.error


def test_occlusion_controls_reach_the_api() -> None:
    client = FakeClient()
    at = run_page(client)
    at.number_input(key="occlusion_window").set_value(12).run()
    at.selectbox(key="occlusion_fill").set_value("grey level").run()
    at.slider(key="occlusion_fill_grey").set_value(0.25).run()
    assert not at.exception
    last = [c for c in client.calls if c["endpoint"] == "occlusion"][-1]
    assert last["params"]["window"] == 12 and last["params"]["fill"] == 0.25


def test_opacity_changes_are_blended_locally_without_new_requests() -> None:
    client = FakeClient()
    at = run_page(client)
    calls = len(client.calls)
    at.slider(key="alpha").set_value(0.9).run()
    assert not at.exception and len(client.calls) == calls


def test_target_and_layer_choices_reach_the_api() -> None:
    client = FakeClient()
    at = run_page(client)
    at.selectbox(key="target").set_value("ring").run()
    at.selectbox(key="layer").set_value("features.2").run()
    explained = [c for c in client.calls if c["endpoint"] != "classify"]
    assert {c["target"] for c in explained[-5:]} == {4}  # four with the new target, Grad-CAM again for the layer
    assert explained[-1]["params"]["method"] == "gradcam" and explained[-1]["layer"] == "features.2"
    assert "pool" not in at.selectbox(key="layer").options  # not a spatial layer Grad-CAM can use
    assert any("Why “ring”?" in h.value for h in at.subheader)


def test_api_errors_become_a_banner_not_a_traceback() -> None:
    at = run_page(FakeClient(fail=ApiError(400, "image is truncated or corrupt", "image")))
    assert not at.exception
    assert len(at.error) == 1
    assert "field `image`" in at.error[0].value and "truncated" in at.error[0].value


def test_unreachable_api_is_reported_in_the_sidebar_and_on_the_page() -> None:
    down = ApiError(0, "the ConvLens API at http://127.0.0.1:9 is unreachable (ConnectionError)")
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = FakeClient(fail=down, reachable=False)
    at.run()
    assert not at.exception
    messages = " ".join(e.value for e in at.sidebar.error) + " ".join(e.value for e in at.error)
    assert "make run" in messages and "unreachable" in messages


def test_sidebar_shows_weights_and_warns_about_missing_ones() -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = FakeClient()
    at.run()
    assert not at.exception
    picker = at.sidebar.selectbox(key="model")
    assert picker.value == "builtin"
    assert "API: connected" in at.sidebar.success[0].value
    picker.set_value("vgg16").run()
    assert any("convlens weights fetch vgg16" in w.value for w in at.sidebar.warning)
