"""The client's model methods: what they send, and a round trip through the real handlers (in process, no Java).

``Loopback`` stands in for the client's ``requests.Session``: a POST to ``/predictions/<endpoint>`` is answered by
that endpoint's handler, the way TorchServe hands a JSON body to it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors.torch import save

from client.http import ApiError, ConvLensClient, ModelEntry, ModelInfo, weights_format
from convlens import zoo
from convlens.techniques.corpus import model_files
from tests.handlers.conftest import call, make_context, png_bytes


class Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code, self._body, self.text = status, body, json.dumps(body)

    def json(self) -> dict[str, Any]:
        return self._body


class Recorder:
    """Records each POST and answers with ``answer``."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer, self.sent = answer, []  # type: ignore[var-annotated]

    def post(self, url: str, json: dict[str, Any], headers: dict[str, str], timeout: float) -> Response:  # noqa: A002
        self.sent.append((url, json, timeout))
        return Response(200, self.answer)


class Loopback:
    def __init__(self, handlers: dict[str, Any]) -> None:
        self.handlers = handlers

    def post(self, url: str, json: dict[str, Any], headers: dict[str, str], timeout: float) -> Response:  # noqa: A002
        endpoint = url.rsplit("/", 1)[1]
        [(status, body)] = call(self.handlers[endpoint], [{"body": json}])
        return Response(status, body)


def corpus_answer(items: list[dict[str, Any]], scalars: dict[str, float]) -> dict[str, Any]:
    return {"technique": "model_files", "images": {}, "scalars": scalars, "series": {}, "items": items,
            "elapsed_ms": 1.0, "weights": "builtin", "model": "builtin"}


def client_with(session: Any) -> ConvLensClient:
    client = ConvLensClient("http://api.test", token="t")
    client._session = session
    return client


def test_model_add_sends_one_dataset_request_with_the_weights_in_base64() -> None:
    card = {"name": "defects", "source": "torchvision:resnet18", "classes": ["ok", "scratch", "dent"]}
    recorder = Recorder(corpus_answer([card], {"parameters": 11.0, "upload_enabled": 1.0}))
    answer = client_with(recorder).model_add("defects", "torchvision:resnet18", b"\x00weights",
                                            ["ok", "scratch", "dent"], input_size=32, mean=(0.5, 0.5, 0.5),
                                            std=[0.2] * 3, kwargs={"num_classes": 3}, strip_prefix=["module."])
    assert answer == card
    [(url, body, timeout)] = recorder.sent
    assert url == "http://api.test/predictions/dataset" and timeout >= 900
    assert body["model"] == "builtin" and body["params"] == {
        "method": "model_files", "action": "add", "name": "defects", "source": "torchvision:resnet18",
        "weights": base64.b64encode(b"\x00weights").decode(), "weights_format": "safetensors",
        "classes": "ok\nscratch\ndent", "description": "", "input_size": 32, "mean": [0.5, 0.5, 0.5],
        "std": [0.2, 0.2, 0.2], "kwargs": {"num_classes": 3}, "strip_prefix": ["module."]}


def test_models_list_and_remove_read_the_rows_and_the_upload_switch() -> None:
    rows = [{"name": "digits", "status": "available", "reason": None, "card": {"name": "digits"}},
            {"name": "broken", "status": "unavailable", "reason": "weights.file: missing", "card": None}]
    recorder = Recorder(corpus_answer(rows, {"models": 2.0, "upload_enabled": 0.0}))
    client = client_with(recorder)
    listed = client.models_list()
    assert listed.upload_enabled is False and listed.models == [
        ModelEntry("digits", "available", None, {"name": "digits"}),
        ModelEntry("broken", "unavailable", "weights.file: missing", None)]
    client.model_remove("broken")
    assert [body["params"] for _, body, _ in recorder.sent] == [
        {"method": "model_files", "action": "list"}, {"method": "model_files", "action": "remove", "name": "broken"}]


def test_model_info_reads_built_in_and_registered_rows() -> None:
    builtin = ModelInfo.from_json({"name": "builtin", "description": "CNN", "weights": "builtin", "status": "available",
                                   "num_classes": 10, "input_size": 64, "fetch_hint": None})
    broken = ModelInfo.from_json({"name": "broken", "description": "", "weights": "registered",
                                  "status": "unavailable", "reason": "name: no", "num_classes": None,
                                  "input_size": None, "card": None, "fetch_hint": None})
    assert builtin == ModelInfo("builtin", "CNN", "builtin", 10, 64) and builtin.available
    assert not broken.available and broken.reason == "name: no" and broken.num_classes is None
    assert [weights_format(n) for n in ("a.safetensors", "b.PT", "c.pth")] == ["safetensors", "pt", "pt"]
    with pytest.raises(ValueError):
        weights_format("model.onnx")


def test_a_model_added_with_the_client_is_classified_and_removed(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.corpus import CorpusHandler
    from handlers.prediction import PredictionHandler as ClassifyHandler

    monkeypatch.setenv(zoo.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(model_files.MODEL_UPLOAD_ENV, raising=False)
    dataset, classify = CorpusHandler(), ClassifyHandler()
    dataset.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    classify.initialize(make_context("classify"))
    client = client_with(Loopback({"dataset": dataset, "classify": classify}))
    torch.manual_seed(0)
    weights = save(torchvision.models.mobilenet_v3_small(num_classes=2).state_dict())
    add = dict(source="torchvision:mobilenet_v3_small", weights=weights, classes=["good", "bad"], input_size=32,
               mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], kwargs={"num_classes": 2})

    assert client.models_list().upload_enabled is False
    with pytest.raises(ApiError) as refused:
        client.model_add("parts", **add)  # type: ignore[arg-type]
    assert refused.value.status == 400 and refused.value.field == "params.action"

    monkeypatch.setenv(model_files.MODEL_UPLOAD_ENV, "1")
    card = client.model_add("parts", **add)  # type: ignore[arg-type]
    assert card["classes"] == ["good", "bad"] and card["input_size"] == 32 and len(card["weights_sha256"]) == 64
    listed = client.models_list()
    assert listed.upload_enabled and {e.name: e.status for e in listed.models}["parts"] == "available"
    row = {m.name: m for m in client.models()}["parts"]
    assert row.weights == "registered" and row.available and row.card is not None and row.num_classes == 2
    answer = client.classify(png_bytes(), model="parts", topk=2)
    assert {t.label for t in answer.topk} == {"good", "bad"} and answer.weights == "registered"
    with pytest.raises(ApiError) as bad:
        client.model_add("other", **{**add, "source": "python:net.py:build"})  # type: ignore[arg-type]
    assert bad.value.field == "params.source"
    assert "parts" not in {e.name for e in client.model_remove("parts").models}
    with pytest.raises(ApiError) as gone:
        client.classify(png_bytes(), model="parts")
    assert gone.value.status == 400 and gone.value.field == "model"


@pytest.mark.parametrize("environment,passed,shown", [
    ({}, {"CONVLENS_MODEL_UPLOAD": "1"}, "model upload:   on"),
    ({"CONVLENS_MODEL_UPLOAD": "0"}, {}, "model upload:   off"),
    ({"CONVLENS_MODEL_UPLOAD": "true"}, {}, "model upload:   on"),
])
def test_serve_start_turns_model_upload_on_for_local_development_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        environment: dict[str, str], passed: dict[str, str], shown: str) -> None:
    """`make run` runs `convlens serve start`: upload on unless the environment says; the containers start the
    server through ``serve.server.start`` without ``local_dev_env`` (upload off unless the operator sets it)."""
    from client import cli
    from serve import local, server

    monkeypatch.delenv("CONVLENS_MODEL_UPLOAD", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    seen: dict[str, Any] = {}

    def fake_start(run_dir: Any, ports: Any, **kwargs: Any) -> local.Running:  # TorchServe and its gate
        seen.update(kwargs)
        return local.Running(server.ServerInfo(tmp_path, ports, True, True, 4242, "healthy"), None)

    monkeypatch.setattr(local, "start", fake_start)
    assert cli.main(["serve", "start", "--run-dir", str(tmp_path)]) == 0
    assert seen["env"] == passed == server.local_dev_env()
    assert shown in capsys.readouterr().out
    entrypoint = (Path(__file__).resolve().parents[1] / "deploy" / "api" / "entrypoint.py").read_text()
    assert "local_dev_env" not in entrypoint and "CONVLENS_MODEL_UPLOAD" not in entrypoint
