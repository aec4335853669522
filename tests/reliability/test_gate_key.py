"""The gate's own API key (Kubernetes/compose secret mode): one stable key for every replica, checked by nginx,
forwarded to TorchServe with TorchServe's random key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from serve import gate
from tests.reliability.conftest import TEST_LIMITS, Stack, free_port
from tests.reliability.test_hostile_inputs import img

KEY = "k8s-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed(stack: Stack) -> Iterator[gate.Gate]:
    run_dir = stack.run_dir / "keyed-gate"
    g = gate.start(run_dir, ("127.0.0.1", free_port()), stack.info.ports.inference, TEST_LIMITS,
                   api_key=KEY, upstream_key=stack.token)
    try:
        yield g
    finally:
        g.stop()


def call(g: gate.Gate, token: str | None) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.post(f"{g.url}/predictions/classify", json=img(), headers=headers, timeout=60)


def test_the_configured_key_is_accepted(keyed: gate.Gate) -> None:
    r = call(keyed, KEY)
    assert r.status_code == 200 and r.json()["topk"][0]["label"] == "ring"
    ping = requests.get(f"{keyed.url}/ping", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert ping.status_code == 200


@pytest.mark.parametrize("token", [None, "wrong-key-0123456789", "torchserve"])
def test_anything_else_gets_401_json(keyed: gate.Gate, stack: Stack, token: str | None) -> None:
    r = call(keyed, stack.token if token == "torchserve" else token)
    assert r.status_code == 401 and r.headers["Content-Type"] == "application/json"
    assert r.json()["field"] == "Authorization"


@pytest.mark.parametrize("bad", ["short", 'quote"inside-0123456789', "semi;colon-0123456789",
                                 "space inside 0123456789"])
def test_keys_nginx_could_misread_are_refused(bad: str) -> None:
    with pytest.raises(gate.GateError):
        gate.check_key(bad)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_container_config_turns_the_metrics_api_off(stack: Stack) -> None:
    """/metrics used to answer without a token; the deployments run without the metrics API."""
    assert gate.TORCHSERVE_CONFIG["enable_metrics_api"] == "false"
    assert not _listening(stack.info.ports.metrics), "the metrics port answers"
    assert _listening(stack.info.ports.inference)


def test_management_needs_its_own_key_and_stays_on_loopback(stack: Stack) -> None:
    props = {k: v for k, v in (line.split("=", 1) for line in stack.info.config_file.read_text().splitlines()
                               if "=" in line and not line.startswith("#"))}
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    url = f"{stack.info.management_url}/models/classify?min_worker=3"
    inference_key = {"Authorization": f"Bearer {stack.token}"}
    assert requests.put(url, headers=inference_key, timeout=10).status_code in (400, 401, 403)
    assert requests.post(f"{stack.info.management_url}/workflows?url=x.war", timeout=10).status_code in (400, 401, 403)
