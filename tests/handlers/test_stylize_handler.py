"""The synthesis handler on ``stylize``: a batch of compatible requests runs as one tensor batch, bad ones are
4xx naming the field without failing the others, streamed requests still end with a result line."""

from __future__ import annotations

from handlers.synthesis import SynthesisHandler
from tests.handlers.conftest import b64, call, make_context, png_bytes


def row(params: dict[str, object], **extra: object) -> dict[str, object]:
    return {"body": {"content": b64(png_bytes()), "params": params, **extra}}


def handler() -> SynthesisHandler:
    h = SynthesisHandler()
    h.endpoint = "stylize"
    h.initialize(make_context("stylize"))
    return h


def test_a_batch_of_stylize_requests_runs_together_and_bad_ones_are_named() -> None:
    good = {"style": "brick", "size": 64}
    results = call(handler(), [row(good), row(good, stream=True), row({"blend": {"brick": 0.9}}), row(good)])
    statuses = [s for s, _ in results]
    assert statuses == [200, 200, 400, 200]
    assert [results[i][1]["scalars"]["batch"] for i in (0, 1, 3)] == [3.0, 3.0, 3.0]
    assert results[1][1]["event"] == "result" and "event" not in results[0][1]
    assert results[2][1]["field"] == "params.blend"
