"""The shared base: device from the context, the bounded model cache, configuration."""

from __future__ import annotations

import pytest
import torch

import handlers.model_cache as model_cache
from handlers.attribution import AttributionHandler as SaliencyHandler
from tests.handlers.conftest import make_context


class FakeLoaded:
    def __init__(self, name: str, weights: str, device: torch.device) -> None:
        self.name, self.weights, self.device = name, weights, device


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, torch.device]]:
    calls: list[tuple[str, str, torch.device]] = []

    def fake_load(name: str, weights: str, device: torch.device) -> FakeLoaded:
        calls.append((name, weights, device))
        return FakeLoaded(name, weights, device)

    monkeypatch.setattr(model_cache, "load", fake_load)
    return calls


@pytest.mark.parametrize(("gpu_id", "cuda", "expected"), [
    (None, False, "cpu"), (None, True, "cpu"), (0, False, "cpu"), (0, True, "cuda:0"), (1, True, "cuda:1"),
])
def test_device_comes_from_the_context(monkeypatch, loads, gpu_id, cuda, expected) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    handler = SaliencyHandler()
    handler.initialize(make_context(gpu_id=gpu_id))
    assert handler.device == torch.device(expected)
    handler.get_model("builtin", "pretrained")
    assert loads == [("builtin", "pretrained", torch.device(expected))]


def test_cache_is_bounded_lru(loads) -> None:  # type: ignore[no-untyped-def]
    handler = SaliencyHandler()
    handler.initialize(make_context(handler_config={"cache_size": 2}))
    assert handler.cache.capacity == 2
    a = handler.get_model("builtin", "pretrained")
    handler.get_model("resnet18", "random")
    assert handler.get_model("builtin", "pretrained") is a  # a hit: no reload, and now most recent
    handler.get_model("alexnet", "random")  # evicts resnet18, the least recently used
    assert len(handler.cache) == 2
    assert handler.cache.keys() == [("builtin", "pretrained"), ("alexnet", "random")]
    handler.get_model("resnet18", "random")  # loaded again
    assert [name for name, *_ in loads] == ["builtin", "resnet18", "alexnet", "resnet18"]
    assert handler.cache.keys() == [("alexnet", "random"), ("resnet18", "random")]


def test_cache_size_from_environment_and_default(monkeypatch, loads) -> None:  # type: ignore[no-untyped-def]
    handler = SaliencyHandler()
    handler.initialize(make_context())
    assert handler.cache.capacity == model_cache.DEFAULT_CACHE_SIZE == 3
    monkeypatch.setenv("CONVLENS_MODEL_CACHE_SIZE", "5")
    handler.initialize(make_context())
    assert handler.cache.capacity == 5


def test_preload_failures_do_not_stop_the_worker(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def missing(name: str, weights: str, device: torch.device) -> None:
        raise model_cache.zoo.WeightsNotFoundError(f"no weights for {name}")

    monkeypatch.setattr(model_cache, "load", missing)
    handler = SaliencyHandler()
    handler.initialize(make_context(handler_config={"preload": ["vgg16"]}))
    assert handler.initialized and len(handler.cache) == 0


def test_handler_files_define_exactly_one_class() -> None:
    """TorchServe loads the only class a handler module defines (ts.utils.util.list_classes_from_module)."""
    import importlib

    from ts.utils.util import list_classes_from_module

    from serve.archives import all_endpoints, handler_name

    for module_name in sorted({f"handlers.{handler_name(e)}" for e in all_endpoints()}):
        classes = list_classes_from_module(importlib.import_module(module_name))
        assert len(classes) == 1 and hasattr(classes[0], "handle")


def test_inference_runs_with_gradients_even_under_inference_mode(saliency_handler) -> None:  # type: ignore[no-untyped-def]
    from tests.handlers.conftest import call, json_row, png_bytes

    with torch.inference_mode(False), torch.no_grad():
        [(status, body)] = call(saliency_handler, [json_row(png_bytes(), params={"method": "vanilla"})])
    assert status == 200, body


def test_preloaded_models_are_warmed_up(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import handlers.base as module

    methods: list[str] = []
    real = module.pipeline.run

    def spy(loaded, technique, *args):  # type: ignore[no-untyped-def]
        methods.append(technique)
        return real(loaded, technique, *args)

    monkeypatch.setattr(module.pipeline, "run", spy)
    handler = SaliencyHandler()
    context = make_context(handler_config={"preload": ["builtin"]})
    handler.initialize(context)
    assert handler.cache.keys() == [("builtin", "pretrained")]
    assert sorted(methods) == ["gradcam", "guided", "vanilla"] and handler.context is context
