"""The Attribution page and the sidebar, driven with streamlit.testing against a fake client."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from client.http import ApiError
from tests.dashboard.conftest import FakeClient

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "app_pages" / "attribution.py")
APP = str(ROOT / "dashboard" / "streamlit_app.py")


def run_page(client: FakeClient, **state: object) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["client"] = client
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_page_shows_top5_chart_three_maps_and_downloads() -> None:
    client = FakeClient()
    at = run_page(client)
    assert not at.exception
    assert [c["endpoint"] for c in client.calls] == ["classify", "saliency", "saliency", "saliency"]
    assert [c["params"].get("method") for c in client.calls[1:]] == ["vanilla", "guided", "gradcam"]
    gradcam = client.calls[3]
    assert gradcam["layer"] == "features" and gradcam["params"]["alpha"] == 1.0
    assert all(c["layer"] is None for c in client.calls[1:3])
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("download_button")) == 3
    assert any("Why “cross”?" in h.value for h in at.subheader)
    assert len(at.get("image")) == 5  # the input, three overlays and the guided gradient
    assert not at.error


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
    last = client.calls[-3:]
    assert {c["target"] for c in last} == {4}
    assert last[-1]["layer"] == "features.2"
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
