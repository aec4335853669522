"""The client's convenience methods ask for their techniques by the one rule (``convlens.schema.route``), at the
endpoints the registry declares."""

from __future__ import annotations

import json
from typing import Any

from client.http import ConvLensClient, TechniqueInfo
from convlens import registry
from convlens.schema import METHOD_PARAM, route


class Response:
    status_code = 200

    def __init__(self, body: dict[str, Any]) -> None:
        self._body, self.text = body, json.dumps(body)

    def json(self) -> dict[str, Any]:
        return self._body


class Recorder:
    """Records each POST (endpoint, params) and answers with an empty result of the endpoint's family."""

    ANSWERS: dict[str, dict[str, Any]] = {
        "prediction": {"images": {}, "target": 0, "target_label": "", "topk": [], "scalars": {}},
        "attribution": {"images": {}, "target": 0, "target_label": "", "topk": [], "scalars": {}},
        "corpus": {"technique": "", "images": {}, "scalars": {}, "series": {}, "items": []},
        "synthesis": {"technique": "", "images": {}, "scalars": {}, "series": {}, "labels": {}},
    }

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, json: dict[str, Any], headers: dict[str, str], timeout: float) -> Response:  # noqa: A002
        endpoint = url.rsplit("/", 1)[1]
        self.sent.append((endpoint, dict(json["params"])))
        answer = self.ANSWERS[registry.endpoint_family(endpoint)]
        return Response({**answer, "elapsed_ms": 1.0, "weights": "builtin"})


def recording_client() -> tuple[ConvLensClient, Recorder]:
    client = ConvLensClient("http://api.test", token="t")
    recorder = Recorder()
    client._session = recorder  # type: ignore[assignment]
    return client, recorder


def asked_for(name: str) -> tuple[str, dict[str, Any]]:
    """What the registry says a request for technique ``name`` is."""
    return route(name, registry.get(name).route)


def test_each_convenience_method_asks_for_its_technique_by_the_rule() -> None:
    client, recorder = recording_client()
    client.saliency(b"png", "guided", alpha=0.3)
    client.codes([b"png", b"png"])
    client.dataset("embedding", params={"dataset": "shapes"})
    client.models_list()
    client.classify(b"png", topk=3)
    endpoint, implied = asked_for("guided")
    assert recorder.sent[0] == (endpoint, {**implied, "alpha": 0.3})
    assert recorder.sent[1] == asked_for("codes")
    endpoint, implied = asked_for("embedding")
    assert recorder.sent[2] == (endpoint, {**implied, "dataset": "shapes"})
    endpoint, implied = asked_for("model_files")
    assert recorder.sent[3] == (endpoint, {**implied, "action": "list"})
    endpoint, implied = asked_for("classify")
    assert recorder.sent[4] == (endpoint, {**implied, "topk": 3})


def test_synthesis_by_its_catalogue_entry_or_by_endpoint_and_method() -> None:
    client, recorder = recording_client()
    info = TechniqueInfo.from_json(registry.get("neuron_gallery").describe())
    client.synthesis(info, params={"steps": 3})
    client.synthesis(f"{info.endpoint}:{info.name}", params={"steps": 3})
    client.synthesis(info.endpoint, params={"steps": 3})  # the endpoint's default technique: no method
    endpoint, implied = asked_for("neuron_gallery")
    assert recorder.sent == [(endpoint, {**implied, "steps": 3})] * 2 + [(endpoint, {"steps": 3})]
    assert METHOD_PARAM in implied
