"""Only the documented API is served through the gate (POST /predictions/<endpoint>, GET /ping): another method
is 405 JSON with ``Allow``, another path 404 JSON; and a streamed answer says it is newline-delimited JSON."""

from __future__ import annotations

import json

import pytest
import requests

from tests.reliability.conftest import Stack
from tests.reliability.test_hostile_inputs import valid_request_succeeds


def assert_json_error(r: requests.Response, status: int) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers["Content-Type"] == "application/json"
    assert set(r.json()) == {"error", "field"} and r.json()["field"] is None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_predictions_answer_only_post(stack: Stack, method: str) -> None:
    r = requests.request(method, f"{stack.url}/predictions/classify", headers=stack.headers(), timeout=30,
                         json={"image": "x"} if method in ("PUT", "PATCH") else None)
    assert r.status_code == 405 and r.headers["Allow"] == "POST", (r.status_code, r.headers)
    if method != "HEAD":  # a HEAD answer has no body
        assert_json_error(r, 405)
        assert "POST" in r.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_ping_answers_only_get(stack: Stack, method: str) -> None:
    r = requests.request(method, f"{stack.url}/ping", headers=stack.headers(), timeout=30)
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "GET"
    assert requests.get(f"{stack.url}/ping", headers=stack.headers(), timeout=30).status_code == 200


@pytest.mark.parametrize("path", ["/explanations/classify", "/v1/models/classify:predict",
                                  "/v2/models/classify/infer", "/api-description", "/", "/models"])
def test_undocumented_paths_are_404_json(stack: Stack, path: str) -> None:
    r = requests.post(f"{stack.url}{path}", headers=stack.headers(), json={"image": "x"}, timeout=30)
    assert_json_error(r, 404)
    valid_request_succeeds(stack)


def test_a_streamed_answer_is_ndjson(stack: Stack) -> None:
    body = {"params": {"steps": 20, "size": 64}, "stream": True, "job": "ndjson-1"}
    with stack.post("neuron", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200
        assert r.headers.get("Content-Type") == "application/x-ndjson", r.headers
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[0]["event"] == "progress" and lines[-1]["event"] == "result"


def test_an_unstreamed_answer_stays_json(stack: Stack) -> None:
    r = stack.post("neuron", json={"params": {"steps": 2, "size": 64}})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
