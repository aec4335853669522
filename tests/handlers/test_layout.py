"""How the handlers are built: TorchServe's step signatures kept, no technique named in handler or serve code,
small functions, and one encoder for every family's response."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from ts.torch_handler.base_handler import BaseHandler

from convlens import registry, render
from convlens.schema import AttributionResponse, CorpusResponse, GridsResponse, SynthesisResponse
from handlers import responses
from serve.archives import all_endpoints, handler_name

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 60


def handler_classes() -> list[type]:
    modules = sorted({f"handlers.{handler_name(e)}" for e in all_endpoints()})
    return [cls for m in modules for _, cls in inspect.getmembers(importlib.import_module(m), inspect.isclass)
            if issubclass(cls, BaseHandler) and cls is not BaseHandler]


@pytest.mark.parametrize("cls", handler_classes(), ids=lambda c: c.__name__)
def test_overrides_of_torchserve_steps_keep_their_signatures(cls: type) -> None:
    """TorchServe's BaseHandler steps (preprocess, inference, postprocess, ...) are overridden only with the same
    parameters; the base names its own steps differently."""
    for name, member in inspect.getmembers(BaseHandler, inspect.isfunction):
        own = getattr(cls, name)
        if own is not member:
            assert list(inspect.signature(own).parameters) == list(inspect.signature(member).parameters), name


def string_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_no_technique_or_endpoint_is_named_in_handler_or_serve_code() -> None:
    names = set(registry.registry()) | set(registry.all_endpoints())
    found = [f"{path.relative_to(ROOT)}:{line} {value!r}" for folder in ("handlers", "serve")
             for path in sorted((ROOT / folder).rglob("*.py")) for line, value in string_literals(path)
             if value in names]
    assert found == []


def test_no_handler_function_is_longer_than_60_lines() -> None:
    long = [f"{path.name}:{node.name} ({(node.end_lineno or 0) - node.lineno + 1})"
            for path in sorted((ROOT / "handlers").glob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or 0) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


@pytest.mark.parametrize("response_type", [AttributionResponse, GridsResponse, CorpusResponse, SynthesisResponse])
def test_one_encoder_gives_each_family_exactly_its_response_fields(response_type: Any) -> None:
    output = render.Output(technique="t", family="attribution", model="builtin", weights="random",
                           images={"map": torch.rand(8, 8)}, scalars={"score": 1.5}, target=2, target_label="dots",
                           topk=[(2, "dots", 0.75)], labels={"result_label": "dots"}, items=[{"row": 0}],
                           series={"loss": ([0.0, 1.0], [2.0, 1.0])}, vectors=[[1.0]], points=[[0.0, 1.0]])
    body = responses.body(output, response_type)
    parsed = response_type.from_json(body)  # exactly the schema's fields, as JSON values
    assert parsed.images["map"] == responses.encode_b64_png(output.images["map"]) and body["elapsed_ms"] == 0.0
    if "topk" in body:
        assert body["topk"] == [{"index": 2, "label": "dots", "probability": 0.75}]
    if "series" in body:
        assert body["series"] == {"loss": [[0.0, 1.0], [2.0, 1.0]]}
