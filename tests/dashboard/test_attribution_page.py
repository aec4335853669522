"""The Attribution page and the sidebar, driven with streamlit.testing against a fake client."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from client.http import ApiError
from convlens import registry
from tests.dashboard.conftest import FakeClient
from tests.dashboard.conftest import run_page as run_on

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "app_pages" / "attribution.py")
APP = str(ROOT / "dashboard" / "streamlit_app.py")


def run_page(client: FakeClient, **state: object) -> AppTest:
    return run_on(PAGE, client, **state)


ATTRIBUTION = registry.of_family("attribution")


def test_page_shows_top5_chart_every_attribution_technique_and_downloads() -> None:
    client = FakeClient()
    at = run_page(client)
    assert not at.exception
    [predict] = registry.of_family("prediction")
    assert [c["method"] for c in client.calls] == [predict.name, *(s.name for s in ATTRIBUTION)]
    assert [c["endpoint"] for c in client.calls] == [predict.route, *(s.route for s in ATTRIBUTION)]
    for call, spec in zip(client.calls[1:], ATTRIBUTION, strict=True):
        assert call["layer"] == ("features" if spec.layer == "spatial" else None)
        assert call["params"]["alpha"] == 1.0
    occlusion = registry.get("occlusion")
    [sent] = [c for c in client.calls if c["method"] == occlusion.name]
    assert sent["params"]["window"] == occlusion.params().window and sent["params"]["fill"] == "mean"
    # the top-5 chart, a colour bar per map and one for occlusion's signed logit drop
    assert len(at.get("plotly_chart")) == 1 + len(ATTRIBUTION) + 1
    assert len(at.get("download_button")) == len(ATTRIBUTION)  # each technique's map
    assert any("Why “cross”?" in h.value for h in at.subheader)
    images = [{d.name for d in spec.declared.of("images") if not d.optional} for spec in ATTRIBUTION]
    common = set(images[0]).intersection(*images[1:])
    own = sum(len(names - common) for names in images)
    assert own >= 2  # guided's gradient and occlusion's logit drop at least
    assert len(at.get("image")) == 1 + len(ATTRIBUTION) + own  # the input, each overlay, each own image
    assert "signed guided gradient (grey = 0)" in [e.label.lower() for e in at.expander]  # its declared caption
    assert not at.error


def test_occlusion_controls_reach_the_api() -> None:
    client = FakeClient()
    at = run_page(client)
    at.number_input(key="occlusion_window").set_value(12).run()
    at.selectbox(key="occlusion_fill").set_value("grey level").run()
    at.slider(key="occlusion_fill_grey").set_value(0.25).run()
    assert not at.exception
    last = [c for c in client.calls if c["method"] == "occlusion"][-1]
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
    explained = [c for c in client.calls if c["method"] != "classify"]
    spatial = [s.name for s in ATTRIBUTION if s.layer == "spatial"]
    again = len(ATTRIBUTION) + len(spatial)  # each with the new target, then the layer's users again
    assert {c["target"] for c in explained[-again:]} == {4}
    assert [c["method"] for c in explained[-len(spatial):]] == spatial and explained[-1]["layer"] == "features.2"
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
