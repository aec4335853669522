"""The server picks up the models directory as it changes: no restart, no archive rebuilt.

Two handler instances stand for two TorchServe workers: both read the same directory, so a model added,
edited or removed is seen by both on their next request.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from convlens import zoo
from handlers.attribution import AttributionHandler
from handlers.prediction import PredictionHandler as ClassifyHandler
from tests.core.test_zoo import NET_PY, SEVEN, tiny_net
from tests.handlers.conftest import call, json_row, make_context, png_bytes


def add_tiny(tmp_path: Path, name: str = "mine", classes: tuple[str, ...] = SEVEN) -> None:
    (tmp_path / "net.py").write_text(NET_PY)
    save_file(tiny_net(num_classes=len(classes)).state_dict(), tmp_path / "w.safetensors")
    zoo.add(name, "python:net.py:build", tmp_path / "w.safetensors", list(classes), input_size=32, channels=1,
            mean=[0.5], std=[0.5], code=tmp_path / "net.py", replace=True, kwargs={"num_classes": len(classes)})


def workers() -> tuple[ClassifyHandler, AttributionHandler]:
    classify, saliency = ClassifyHandler(), AttributionHandler()
    classify.initialize(make_context("classify"))
    saliency.initialize(make_context("saliency"))
    return classify, saliency


def test_a_model_added_while_serving_is_served_by_every_worker(models: Path, tmp_path: Path) -> None:
    classify, saliency = workers()
    [(status, body)] = call(classify, [json_row(png_bytes(), model="mine")])
    assert status == 400 and body["field"] == "model" and "unknown model 'mine'" in body["error"]
    add_tiny(tmp_path)
    [(status, body)] = call(classify, [json_row(png_bytes(), model="mine")])
    assert status == 200 and body["topk"][0]["label"] in SEVEN
    [(status, body)] = call(saliency, [json_row(png_bytes(), model="mine", params={"method": "gradcam"})])
    assert status == 200 and body["images"]["map"]
    [(status, info)] = call(classify, [{"body": {"info": "models"}}])
    row = {m["name"]: m for m in info["models"]}["mine"]
    assert row["status"] == "available" and row["card"]["channels"] == 1 and len(row["card"]["weights_sha256"]) == 64


def test_an_edited_model_is_reloaded_and_a_removed_one_refused(models: Path, tmp_path: Path) -> None:
    classify, saliency = workers()
    add_tiny(tmp_path)
    [(status, body)] = call(classify, [json_row(png_bytes(), model="mine", params={"topk": 20})])
    assert status == 200 and len(body["topk"]) == 7
    add_tiny(tmp_path, classes=("yes", "no", "maybe"))  # replaced in place: three classes now
    [(status, body)] = call(classify, [json_row(png_bytes(), model="mine", params={"topk": 20})])
    assert status == 200 and {t["label"] for t in body["topk"]} == {"yes", "no", "maybe"}
    zoo.remove("mine")
    for worker in (classify, saliency):
        [(status, body)] = call(worker, [json_row(png_bytes(), model="mine")])
        assert status == 400 and body["field"] == "model"


def test_a_model_that_fails_its_check_is_listed_unavailable_and_refused_with_the_reason(models: Path) -> None:
    classify, _ = workers()
    broken = models / "broken"
    broken.mkdir(parents=True)
    (broken / "model.toml").write_text('name = "broken"\n[architecture]\nsource = "torchvision:nosuchnet"\n')
    [(status, info)] = call(classify, [{"body": {"info": "models"}}])
    row = {m["name"]: m for m in info["models"]}["broken"]
    assert row["status"] == "unavailable" and row["reason"]
    [(status, body)] = call(classify, [json_row(png_bytes(), model="broken")])
    assert status == 400 and body["field"] == "model" and "unavailable" in body["error"]
