"""Models added and removed over the API (``/predictions/dataset``, ``params.method = model_files``), no Java.

Two handler instances stand for two TorchServe workers: the dataset worker writes the models directory, the
classify worker serves the new model on its next request.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from safetensors.torch import save

from convlens import zoo
from convlens.techniques.corpus import model_files
from handlers.corpus import CorpusHandler
from handlers.prediction import PredictionHandler as ClassifyHandler
from tests.handlers.conftest import call, json_row, make_context, png_bytes

CLASSES = ["ok", "scratch", "dent"]
METHOD = "model_files"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv(zoo.MODELS_DIR_ENV, str(root))
    monkeypatch.setenv(model_files.MODEL_UPLOAD_ENV, "1")
    return root


@pytest.fixture(scope="module")
def workers() -> tuple[CorpusHandler, ClassifyHandler]:
    dataset, classify = CorpusHandler(), ClassifyHandler()
    dataset.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    classify.initialize(make_context("classify"))
    return dataset, classify


@pytest.fixture(scope="module")
def resnet_bytes() -> bytes:
    """A torchvision ResNet-18 with 3 classes and random weights, as a .safetensors file (≈ 45 MB)."""
    torch.manual_seed(0)
    return save(torchvision.models.resnet18(num_classes=3).state_dict())


def add_params(data: bytes, **changes: Any) -> dict[str, Any]:
    params = {"method": METHOD, "action": "add", "name": "defects", "source": "torchvision:resnet18",
              "weights": base64.b64encode(data).decode("ascii"), "classes": "ok\nscratch\ndent\n",
              "input_size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
              "kwargs": {"num_classes": 3}, "description": "Defects on line 3"}
    return {**params, **changes}


def ask(handler: Any, **params: Any) -> tuple[int, dict[str, Any]]:
    [(status, body)] = call(handler, [json_row(params={"method": METHOD, **params})])
    return status, body


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    root.mkdir(parents=True, exist_ok=True)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_model_added_over_the_api_is_served_on_the_next_request(workers, models: Path, resnet_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    dataset, classify = workers
    [(status, body)] = call(classify, [json_row(png_bytes(), model="defects")])
    assert status == 400 and body["field"] == "model"
    [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes))])
    assert status == 200, body
    [card] = body["items"]
    assert card["name"] == "defects" and card["source"] == "torchvision:resnet18" and card["classes"] == CLASSES
    assert card["input_size"] == 32 and card["channels"] == 3 and card["parameters"] == 11_178_051
    assert card["weights_sha256"] == hashlib.sha256(resnet_bytes).hexdigest() and card["layer_count"] > 10
    assert card["description"] == "Defects on line 3" and body["technique"] == METHOD
    assert sorted(p.name for p in (models / "defects").iterdir()) == ["classes.txt", "model.toml",
                                                                     "weights.safetensors"]
    [(status, body)] = call(classify, [json_row(png_bytes(), model="defects", params={"topk": 3})])
    assert status == 200, body
    assert body["model"] == "defects" and body["weights"] == "registered"
    assert {t["label"] for t in body["topk"]} == set(CLASSES)
    status, listed = ask(dataset, action="list")
    assert status == 200 and listed["scalars"]["upload_enabled"] == 1.0
    row = {r["name"]: r for r in listed["items"]}["defects"]
    assert row["status"] == "available" and row["card"]["weights_sha256"] == card["weights_sha256"]
    [(status, info)] = call(classify, [{"body": {"info": "models"}}])
    row = {m["name"]: m for m in info["models"]}["defects"]
    assert row["weights"] == "registered" and row["status"] == "available" and row["card"]["classes"] == CLASSES
    [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes))])
    assert status == 400 and body["field"] == "params.name" and "already exists" in body["error"]


def test_a_pt_checkpoint_with_a_key_and_a_prefix_is_added(workers, models: Path) -> None:  # type: ignore[no-untyped-def]
    dataset, _ = workers
    torch.manual_seed(1)
    net = torchvision.models.squeezenet1_1(num_classes=3)
    buffer = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, buffer)
    params = add_params(buffer.getvalue(), name="squeeze", source="torchvision:squeezenet1_1", weights_format="pt",
                        key="state_dict", strip_prefix="module.", classes=CLASSES)
    [(status, body)] = call(dataset, [json_row(params=params)])
    assert status == 200, body
    assert body["items"][0]["weights_file"] == "weights.pt" and body["items"][0]["classes"] == CLASSES


@pytest.mark.parametrize("changes,field_name,words", [
    ({"source": "python:net.py:build"}, "params.source", "never accepted over the API"),
    ({"source": "onnx:resnet18"}, "params.source", "torchvision:NAME"),
    ({"source": "torchvision:resnet1800"}, "params.source", "no classification model"),
    ({"name": "Bad Name"}, "params.name", "a-z"),
    ({"name": "resnet18"}, "params.name", "shipped with ConvLens"),
    ({"kwargs": {"num_classes": 3, "weights": "DEFAULT"}}, "params.kwargs", "not allowed"),
    ({"kwargs": {"num_classes": 5}}, "params.weights", "has shape (3, 512), the architecture expects (5, 512)"),
    ({"classes": ["a", "b", "c", "d"]}, "params.classes", "4 classes but the model gives 3 logits"),
    ({"classes": ""}, "params.classes", "needs 1"),
    ({"input_size": None}, "params.input_size", "is required"),
    ({"mean": [0.5]}, "params.mean", "1 values for 3 channel(s)"),
    ({"key": "state_dict"}, "params.key", ".pt/.pth checkpoints only"),
    ({"weights": "%%%"}, "params.weights", "base64"),
    ({"weights": ""}, "params.weights", "required"),
])
def test_refusals_name_the_request_field_and_write_nothing(workers, models: Path, resnet_bytes: bytes,  # type: ignore[no-untyped-def]
                                                           changes: dict[str, Any], field_name: str,
                                                           words: str) -> None:
    dataset, _ = workers
    before = snapshot(models)
    [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes, **changes))])
    assert status == 400 and body["field"] == field_name and words in body["error"], body
    assert snapshot(models) == before


def test_a_truncated_safetensors_file_is_refused_naming_params_weights(workers, models: Path,  # type: ignore[no-untyped-def]
                                                                       resnet_bytes: bytes) -> None:
    dataset, _ = workers
    before = snapshot(models)
    [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes[: len(resnet_bytes) // 2]))])
    assert status == 400 and body["field"] == "params.weights" and "safetensors" in body["error"], body
    assert snapshot(models) == before and not list(models.iterdir())


def test_with_upload_off_add_and_remove_are_refused_and_list_says_so(workers, models: Path,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      resnet_bytes: bytes) -> None:
    dataset, _ = workers
    for value in ("", "0", "no"):
        monkeypatch.setenv(model_files.MODEL_UPLOAD_ENV, value)
        before = snapshot(models)
        [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes))])
        assert status == 400 and body["field"] == "params.action", body
        assert "turned model upload off" in body["error"] and "CONVLENS_MODEL_UPLOAD=1" in body["error"]
        status, body = ask(dataset, action="remove", name="digits")
        assert status == 400 and body["field"] == "params.action"
        status, body = ask(dataset, action="list")
        assert status == 200 and body["scalars"]["upload_enabled"] == 0.0 and snapshot(models) == before
    monkeypatch.delenv(model_files.MODEL_UPLOAD_ENV)
    [(status, body)] = call(dataset, [json_row(params=add_params(resnet_bytes))])
    assert status == 400 and body["field"] == "params.action"
    monkeypatch.setenv(model_files.MODEL_UPLOAD_ENV, "true")
    status, body = ask(dataset, action="list")
    assert body["scalars"]["upload_enabled"] == 1.0


def test_an_oversize_upload_is_refused_before_it_is_decoded(workers, models: Path,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, _ = workers
    monkeypatch.setattr(model_files, "MAX_MODEL_UPLOAD_BYTES", 3000)
    decoded: list[int] = []
    real = base64.b64decode
    monkeypatch.setattr(base64, "b64decode", lambda s, *a, **k: decoded.append(len(s)) or real(s, *a, **k))
    [(status, body)] = call(dataset, [json_row(params=add_params(b"\0" * 3001))])
    assert status == 400 and body["field"] == "params.weights" and "3,001 bytes" in body["error"]
    assert "convlens model add" in body["error"] and decoded == []
    assert model_files.decoded_size(base64.b64encode(b"\0" * 3000).decode()) == 3000
    assert [model_files.decoded_size(base64.b64encode(b"x" * n).decode()) for n in (0, 1, 2, 3, 4)] == [0, 1, 2, 3, 4]


def test_a_removed_model_is_refused_naming_model(workers, models: Path, resnet_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    dataset, classify = workers
    [(status, _)] = call(dataset, [json_row(params=add_params(resnet_bytes))])
    assert status == 200
    [(status, _)] = call(classify, [json_row(png_bytes(), model="defects")])
    assert status == 200
    status, body = ask(dataset, action="remove", name="defects")
    assert status == 200 and "defects" not in {r["name"] for r in body["items"]}
    assert not (models / "defects").exists()
    [(status, body)] = call(classify, [json_row(png_bytes(), model="defects")])
    assert status == 400 and body["field"] == "model" and "unknown model 'defects'" in body["error"]
    for name, words in (("defects", "no model"), ("digits", "cannot be removed"), ("resnet18", "built-in"),
                        ("../x", "a-z")):
        status, body = ask(dataset, action="remove", name=name)
        assert status == 400 and body["field"] == "params.name" and words in body["error"], body
