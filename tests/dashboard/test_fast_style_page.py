"""The Fast style page with a fake client: the fast result appears at once and follows the blend sliders
without a new run button, Gatys runs on request with the same content, styles and weights, both with times."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from client.http import ApiError
from tests.dashboard.conftest import FakeClient, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "app_pages" / "fast_style.py")
SAMPLES = ROOT / "dashboard" / "samples"


def stylize_calls(client: FakeClient) -> list[dict[str, object]]:
    return [c for c in client.calls if c.get("technique") == "stylize"]


def captions(at: object) -> str:
    return " | ".join(img.caption for element in at.get("image") for img in element.proto.imgs)  # type: ignore[attr-defined]


def test_fast_result_follows_the_blend_sliders_and_gatys_gets_the_same_weights() -> None:
    client = FakeClient()
    at = run_page(PAGE, client)
    assert not at.exception and not at.error
    [first] = stylize_calls(client)
    assert first["params"] == {"blend": {"coffee": 1.0}, "strength": 0.7, "size": 256}
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


def test_the_gatys_button_label_fits_its_column() -> None:
    """At the 1400-px window of the issue's screenshot a third of the right-hand column showed 20 characters of
    "Run Gatys for comparison" before the ellipsis; 12 leave room for a window 40 % narrower."""
    at = run_page(PAGE, FakeClient())
    label = at.button(key="fast_gatys_run").label
    assert "Gatys" in label and len(label) <= 12, label


def test_the_speed_headline_is_gatys_optimisation_over_the_forward_pass() -> None:
    at = run_page(PAGE, FakeClient())
    at.button(key="fast_gatys_run").click().run()
    [metric] = at.metric
    assert metric.value == "1× faster"  # canned: both 1.5 s
    assert "1.5 s of optimisation" in metric.proto.help and "1500 ms forward pass" in metric.proto.help


# ------------------------------------------------------------------------------------ the first view, measured


def luminance(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(-3, keepdim=True)


def blurred(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W): the layout, without the style's strokes."""
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1).float()
    k = torch.exp(-t.pow(2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k[None, None, None, :])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k[None, None, :, None])


def edges(y: torch.Tensor) -> torch.Tensor:
    gx, gy = y[..., :-1, 1:] - y[..., :-1, :-1], y[..., 1:, :-1] - y[..., :-1, :-1]
    return (gx.pow(2) + gy.pow(2)).sqrt()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-12))


def test_the_first_view_shows_the_content_recognisably_in_the_style() -> None:
    """The page's first request (its default content, styles, strength, size) run through the real network, and
    the same settings on the other sample photos. Measured with these settings (coffee, strength 0.7) on
    astronaut / cat / rocket: blurred-luminance correlation with the content 0.89 / 0.85 / 0.78, edge correlation
    0.76 / 0.52 / 0.57, mean brightness over the content's 0.91 / 0.88 / 1.47, Gram distance to the style over the
    content's 0.06 / 0.21 / 0.39. The old first view (hubble, strength 1): correlation -0.32 / -0.21 / -0.23,
    brightness 0.16 / 0.18 / 0.41 of the content's — a near-black field of specks."""
    from convlens.models import LoadedModel, Preprocessing
    from convlens.pipeline import run
    from convlens.techniques.synthesis.perceptual import network
    from convlens.techniques.synthesis.style import losses, style_grams
    from convlens.training.stylize import load_image
    from tests.conftest import TinyCNN

    client = FakeClient()
    run_page(PAGE, client)
    [first] = stylize_calls(client)
    params, shown = dict(first["params"]), first["images"]["content"]  # type: ignore[call-overload, index]
    loaded = LoadedModel("tiny", TinyCNN().eval(), tuple("abcde"), Preprocessing(16, 16, (0.5,) * 3, (0.25,) * 3),
                         "random")  # the style network ignores the model under study
    percept = network("random_vgg", "cpu")
    [(style, _)] = params["blend"].items()
    targets = style_grams(percept, [load_image(SAMPLES / "styles" / f"{style}.png")], [1.0], 1.0, params["size"])
    others = [Image.open(p).convert("RGB") for p in sorted((SAMPLES / "photos").glob("*.png"))]
    for content in [Image.open(io.BytesIO(shown)).convert("RGB"), *others]:
        [out] = run(loaded, "stylize", [{"content": content}], params=params)
        x, y = out.images["content"][None], out.images["result"][None]
        lx, ly = blurred(luminance(x)), blurred(luminance(y))
        assert correlation(ly, lx) >= 0.7
        assert correlation(edges(ly), edges(lx)) >= 0.45
        assert 2 / 3 <= float(ly.mean() / lx.mean()) <= 1.6
        with torch.no_grad():
            moved, before = losses(percept, y, x, targets)[0], losses(percept, x, x, targets)[0]
        assert float(moved) <= 0.5 * float(before)
