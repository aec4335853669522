"""What a request may make a worker decode: a per-request bound (400 naming the field, nothing decoded), a
per-worker budget shared by a batch (503 + Retry-After for the requests that do not fit), memory handed back."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image
from ts.context import RequestProcessor

from convlens import images as imaging
from handlers import pixel_budget, request_images
from tests.handlers.conftest import b64, make_context


def png_of(width: int, height: int, colour: tuple[int, int, int] = (90, 40, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> pixel_budget.PixelBudget:
    """A fresh worker budget of 1 Mpx for each test."""
    fresh = pixel_budget.PixelBudget(1_000_000)
    monkeypatch.setattr(pixel_budget, "_WORKER", fresh)
    return fresh


@pytest.fixture(scope="module")
def codes_handler():  # type: ignore[no-untyped-def]
    from handlers.corpus import CorpusHandler

    handler = CorpusHandler()
    handler.initialize(make_context("codes"))
    return handler


def send(handler: Any, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
    """One batch; (status, JSON body, response headers) per request."""
    context = handler.context
    context.request_ids = {i: f"req-{i}" for i in range(len(bodies))}
    context.request_processor = [RequestProcessor({}) for _ in bodies]
    out = handler.handle([{"body": body} for body in bodies], context)
    return [(context.get_response_status(i)[0], json.loads(raw), dict(context.get_response_headers(i)))
            for i, raw in enumerate(out)]


def test_a_request_over_the_pixel_bound_is_a_400_naming_the_field_and_decodes_nothing(
        codes_handler, budget: pixel_budget.PixelBudget, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(pixel_budget.REQUEST_ENV, "0.5")  # 500,000 pixels
    monkeypatch.setattr(request_images, "decode_opened", lambda opened: pytest.fail("decoded an image"))
    [(status, body, _)] = send(codes_handler, [{"images": [b64(png_of(400, 400))] * 4}])  # 640,000 pixels
    assert status == 400 and body["field"] == "images" and "megapixels" in body["error"], body
    assert budget.used == 0


def test_a_batch_shares_the_worker_budget_and_the_requests_that_do_not_fit_get_a_503(
        codes_handler, budget: pixel_budget.PixelBudget) -> None:  # type: ignore[no-untyped-def]
    image = b64(png_of(500, 500))  # 250,000 pixels each: four fit in 1 Mpx
    answers = send(codes_handler, [{"images": [image]}] * 6)
    assert [status for status, _, _ in answers] == [200] * 4 + [503] * 2
    for _, body, headers in answers[4:]:
        assert headers.get("Retry-After") == str(pixel_budget.RETRY_AFTER_S) and "retry" in body["error"], body
    assert budget.used == 0  # released once the batch is answered
    assert [status for status, _, _ in send(codes_handler, [{"images": [image]}] * 2)] == [200, 200]


def test_a_request_that_could_never_fit_the_worker_is_a_400(codes_handler, budget: pixel_budget.PixelBudget,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pixel_budget.REQUEST_ENV, "50")
    [(status, body, _)] = send(codes_handler, [{"images": [b64(png_of(1100, 1000))]}])
    assert status == 400 and body["field"] == "images", body


def test_the_budget_is_released_when_a_decode_fails_halfway(codes_handler, budget: pixel_budget.PixelBudget) -> None:  # type: ignore[no-untyped-def]
    truncated = png_of(300, 300, (1, 2, 3))
    broken = truncated[:60] + bytes(len(truncated) - 60)  # the header is fine, the pixels are not
    [(status, body, _)] = send(codes_handler, [{"images": [b64(png_of(300, 300)), b64(broken)]}])
    assert status == 400 and body["field"] == "images.1", body
    assert budget.used == 0


def test_a_big_batch_hands_its_memory_back(codes_handler, budget: pixel_budget.PixelBudget,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def trim() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(pixel_budget, "TRIM_ABOVE_PIXELS", 100_000)
    monkeypatch.setattr(pixel_budget, "return_memory_to_os", trim)
    send(codes_handler, [{"images": [b64(png_of(100, 100))]}])
    assert trims == []
    send(codes_handler, [{"images": [b64(png_of(400, 400))]}])
    assert trims == [1]


def test_the_images_are_reduced_to_the_side_the_model_needs(codes_handler, budget: pixel_budget.PixelBudget,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[tuple[int, int]] = []
    real = imaging.decode_opened

    def spy(opened: imaging.OpenedImage) -> Image.Image:
        decoded = real(opened)
        sizes.append(decoded.size)
        return decoded

    monkeypatch.setattr(request_images, "decode_opened", spy)
    [(status, _, _)] = send(codes_handler, [{"images": [b64(png_of(900, 600))]}])
    side = request_images.decode_side("builtin", "corpus")
    assert status == 200 and sizes == [(round(900 * side / 600), side)]
    assert request_images.decode_side("builtin", "synthesis") == request_images.SYNTHESIS_SIDE > side


def test_malloc_trim_is_called_where_glibc_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert pixel_budget.return_memory_to_os() is True and calls == [0]
    monkeypatch.setattr(ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError("no glibc")))
    assert pixel_budget.return_memory_to_os() is False


@pytest.mark.parametrize("raw,expect", [("", 100_000_000), ("2.5", 2_500_000), ("-1", 100_000_000),
                                        ("lots", 100_000_000), ("nan", 100_000_000)])
def test_the_budget_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, expect: int) -> None:
    monkeypatch.setenv(pixel_budget.WORKER_ENV, raw)
    assert pixel_budget.megapixels_from_env(pixel_budget.WORKER_ENV, 100) == expect
