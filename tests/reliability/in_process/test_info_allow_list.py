"""The info API builds a network for its layer catalogue only when a request could: the model's weights are
on the server, or the model is on the random-weights allow-list."""

from __future__ import annotations

from typing import Any

import pytest

from convlens import models as zoo
from tests.handlers.conftest import call, make_context


@pytest.fixture
def handler():  # type: ignore[no-untyped-def]
    from handlers.prediction import PredictionHandler as ClassifyHandler

    fresh = ClassifyHandler()
    fresh.initialize(make_context("classify"))
    return fresh


def no_build(*args: Any, **kwargs: Any) -> Any:
    pytest.fail(f"built a network: {args} {kwargs}")


def test_layers_of_a_model_outside_the_allow_list_without_weights_are_a_400_and_nothing_is_built(
        handler, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CONVLENS_RANDOM_WEIGHTS_MODELS", raising=False)
    monkeypatch.setattr(zoo, "load_model", no_build)
    monkeypatch.setattr("handlers.model_cache.load", no_build)
    assert zoo.find_weights("vgg19") is None
    [(status, body)] = call(handler, [{"body": {"info": "layers", "model": "vgg19"}}])
    assert status == 400 and body["field"] == "model", body
    assert "CONVLENS_RANDOM_WEIGHTS_MODELS" in body["error"] and "vgg19" in body["error"]
    [(status, body)] = call(handler, [{"body": {"info": "classes", "model": "vgg19"}}])  # needs no network
    assert status == 200 and len(body["classes"]) == 1000


def test_layers_of_an_allowed_model_or_one_whose_weights_are_here_are_answered(
        handler, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVLENS_RANDOM_WEIGHTS_MODELS", "builtin,squeezenet1_1")
    [(status, body)] = call(handler, [{"body": {"info": "layers", "model": "squeezenet1_1"}}])
    assert status == 200 and body["model"] == "squeezenet1_1" and body["layers"], body
    monkeypatch.setenv("CONVLENS_RANDOM_WEIGHTS_MODELS", "builtin")
    [(status, body)] = call(handler, [{"body": {"info": "layers", "model": "builtin"}}])
    assert status == 200 and body["layers"], body
    real_find = zoo.find_weights
    monkeypatch.setattr(zoo, "find_weights", lambda name: tmp_path / "w.pth" if name == "squeezenet1_1"
                        else real_find(name))
    handler.catalogue.layers_info.clear()
    [(status, body)] = call(handler, [{"body": {"info": "layers", "model": "squeezenet1_1"}}])
    assert status == 200 and body["layers"], body
