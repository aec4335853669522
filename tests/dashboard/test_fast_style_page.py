"""The Fast style page with a fake client: the fast result appears at once and follows the blend sliders
without a new run button, Gatys runs on request with the same content, styles and weights, both with times."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.http import ApiError
from tests.dashboard.conftest import FakeClient, run_page

PAGE = str(Path(__file__).resolve().parents[2] / "dashboard" / "app_pages" / "fast_style.py")


def stylize_calls(client: FakeClient) -> list[dict[str, object]]:
    return [c for c in client.calls if c.get("technique") == "stylize"]


def captions(at: object) -> str:
    return " | ".join(img.caption for element in at.get("image") for img in element.proto.imgs)  # type: ignore[attr-defined]


def test_fast_result_follows_the_blend_sliders_and_gatys_gets_the_same_weights() -> None:
    client = FakeClient()
    at = run_page(PAGE, client)
    assert not at.exception and not at.error
    [first] = stylize_calls(client)
    assert first["params"] == {"blend": {"hubble": 1.0}, "strength": 1.0, "size": 256}
    assert set(first["images"]) == {"content"}  # type: ignore[call-overload]
    at.multiselect(key="fast_styles").set_value(["hubble", "coffee"]).run()
    at.slider(key="fast_weight_hubble").set_value(0.6).run()
    at.slider(key="fast_weight_coffee").set_value(0.2).run()
    last = stylize_calls(client)[-1]["params"]
    assert last["blend"] == pytest.approx({"hubble": 0.75, "coffee": 0.25})  # type: ignore[index]
    assert "fast ·" in captions(at) and "ms forward" in captions(at)
    assert not [c for c in client.calls if c.get("technique") == "style"]  # Gatys only on request
    calls_before = len(stylize_calls(client))
    at.button(key="fast_gatys_run").click().run()
    assert not at.exception and not at.error
    [gatys] = [c for c in client.calls if c.get("technique") == "style"]
    assert set(gatys["images"]) == {"content", "style", "style_2"}  # type: ignore[arg-type]
    assert gatys["params"]["style_blend"] == pytest.approx([0.75, 0.25])  # type: ignore[index]
    assert gatys["params"]["size"] == 256  # type: ignore[index]
    assert len(stylize_calls(client)) == calls_before  # the fast result came from the session, not a new call
    assert "Gatys · 1.5 s" in captions(at)
    assert any("×" in m.value for m in at.metric)


def test_a_refused_fast_request_names_the_field() -> None:
    client = FakeClient(fail=ApiError(400, "weights must be >= 0 and sum to 1", "params.blend"))
    at = run_page(PAGE, client)
    assert not at.exception
    assert any("params.blend" in e.value for e in at.error)
