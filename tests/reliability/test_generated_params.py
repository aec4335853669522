"""Generated hostile values for every declared param of every registered technique (issue 26 §1): the in-process
handler answers a success or a 4xx whose JSON names the field — never a 5xx.

For each technique of :func:`convlens.registry.registry`, each field of its params
dataclass, each drawing option its family reads and each top-level field (target, layer, model, weights),
Hypothesis draws wrong types, unicode digits, doubled signs, padded numbers, huge, negative, NaN and infinite
numbers, empty, long and look-alike strings. Every other param is held at a cheap value (one step, the smallest
size, a dataset of 8 images) so long-running techniques are fuzzed too, quickly. ``CONVLENS_FUZZ_EXAMPLES``
raises the examples per field (default 6; the draws are derandomised, so a run is reproducible).
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlens import pipeline, registry
from convlens.corpus import datasets as store
from handlers.activations import ActivationsHandler
from handlers.attribution import AttributionHandler
from handlers.base import ConvLensHandler
from handlers.corpus import CorpusHandler
from handlers.prediction import PredictionHandler
from handlers.synthesis import SynthesisHandler
from tests.handlers.conftest import call, make_context, png_bytes

EXAMPLES = int(os.environ.get("CONVLENS_FUZZ_EXAMPLES", "6"))
HANDLERS: dict[str, type[ConvLensHandler]] = {"prediction": PredictionHandler, "attribution": AttributionHandler,
                                              "activations": ActivationsHandler,
                                              "synthesis": SynthesisHandler, "corpus": CorpusHandler}
TOP_LEVEL = ("target", "layer", "model", "weights")
DATASET = "fuzz"
# Cost knobs held low while another param is fuzzed ("min": the field's declared lower bound).
CHEAP: dict[str, Any] = {"steps": 1, "size": "min", "source_size": "min", "octaves": 1, "count": 1, "layers": 2,
                         "n": 1, "randomisation_images": 1, "projection": "pca", "max_channels": 4, "max_filters": 2,
                         "max_inputs": 2, "k": 2, "query": 0, "dataset": DATASET, "technique": "vanilla",
                         "window": "min", "stride": 16}


# ------------------------------------------------------------------------------------ the hostile values

UNICODE_DIGITS = st.text(st.characters(categories=("Nd", "No"), exclude_characters="0123456789"), min_size=1,
                         max_size=4)
NUMERIC_LOOKALIKES = st.sampled_from(["²", "--5", "+5", "-", "5-", "\u22125", "1_000", "0x10", "1e3", " 5", "5 ",
                                      "5\n", "\t5", "5\0", "nan", "NaN", "inf", "-Infinity", "1e999", "0.5.5", "null",
                                      "true", "9" * 5000, "-" + "9" * 30])
NUMBERS = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**31, max_value=2**80),
                    st.sampled_from([0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 2**63, -(2**63)]),
                    st.floats())
TEXT = st.one_of(st.just(""), st.text(max_size=12), st.integers(1000, 100_000).map(lambda n: "x" * n),
                 st.sampled_from(["\0", "../../etc/passwd", "a\n", "\u0430", "\uff11\uff12"]))
WRONG_TYPES = st.one_of(st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just([[[[]]]]))


def near_misses(value: Any) -> st.SearchStrategy[Any]:
    """A declared default or choice, slightly wrong: padded, upper case, a Cyrillic 'а' for 'a'."""
    if not isinstance(value, str) or not value:
        return st.nothing()
    misses = {value + "\n", " " + value, value.upper(), value.replace("a", "\u0430"), value + "\0"} - {value}
    return st.sampled_from(sorted(misses))


def hostile(default: Any, choices: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    misses = [near_misses(c) for c in (default, *choices)]
    return st.one_of(UNICODE_DIGITS, NUMERIC_LOOKALIKES, NUMBERS, TEXT, WRONG_TYPES, *misses)


# ------------------------------------------------------------------------------------ the cases


@dataclasses.dataclass(frozen=True)
class Case:
    endpoint: str
    spec: registry.Spec
    name: str
    top_level: bool = False  # a top-level field rather than a key of params

    @property
    def field(self) -> str:
        return self.name if self.top_level else f"params.{self.name}"

    def __str__(self) -> str:
        return f"{self.endpoint}-{self.spec.name}-{self.field}"


def param_names(spec: registry.Spec) -> list[str]:
    return [f.name for f in dataclasses.fields(spec.params)] + list(pipeline.RUNNERS[spec.family].display)


def cases() -> list[Case]:
    found = []
    for spec in registry.registry().values():
        found += [Case(spec.route, spec, name) for name in param_names(spec)]
    for endpoint in registry.endpoints():  # the top-level fields once per endpoint, on its default technique
        found += [Case(endpoint, registry.default_technique(endpoint), name, True) for name in TOP_LEVEL]
    return found


def cheap_params(spec: registry.Spec, fuzzed: str) -> dict[str, Any]:
    params: dict[str, Any] = {registry.METHOD_PARAM: spec.name}
    for f in dataclasses.fields(spec.params):
        if f.name in CHEAP and f.name != fuzzed:
            value = f.metadata.get("min") if CHEAP[f.name] == "min" else CHEAP[f.name]
            low = f.metadata.get("min")
            if isinstance(value, (int, float)) and low is not None:
                value = max(value, low)  # the cheapest the declaration allows
            if value is not None:
                params[f.name] = value
    return params


def declared(case: Case) -> tuple[Any, tuple[Any, ...]]:
    """(default, choices) of the fuzzed field, for its near misses."""
    if case.top_level:
        return {"model": "builtin", "weights": "random", "layer": "features.3", "target": "triangle"}.get(case.name), ()
    rows = {row["name"]: row for row in registry.describe_params(case.spec.params)}
    row = rows.get(case.name, {"default": None, "choices": []})
    return row["default"], tuple(row["choices"])


def request_body(case: Case, value: Any) -> dict[str, Any]:
    png = base64.b64encode(png_bytes()).decode("ascii")
    inputs = case.spec.inputs
    body: dict[str, Any] = {name: [png] if name == registry.BATCH_INPUT else png for name in inputs}
    body["params"] = cheap_params(case.spec, case.name)
    if case.spec.family == "synthesis":
        body["target"] = 0  # some need a class to aim at
    if case.top_level:
        body[case.name] = value
    else:
        body["params"][case.name] = value
    return body


# ------------------------------------------------------------------------------------ the test

_HANDLERS: dict[str, ConvLensHandler] = {}


def handler_for(endpoint: str) -> ConvLensHandler:
    if endpoint not in _HANDLERS:
        cls = HANDLERS[registry.endpoint_family(endpoint)]
        h = cls()
        h.initialize(make_context(endpoint, batch_size=1))
        _HANDLERS[endpoint] = h
    return _HANDLERS[endpoint]


@pytest.fixture(scope="module", autouse=True)
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Its own data, jobs and torch folders (no ImageNet weights), and a dataset of 8 images to point at."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(store.DATA_DIR_ENV, str(root / "datasets"))
        mp.setenv("CONVLENS_JOBS_DIR", str(root / "jobs"))
        mp.setenv("TORCH_HOME", str(root / "torch-home"))
        mp.delenv("CONVLENS_WEIGHTS_DIR", raising=False)
        store.builtin(DATASET, 8)
        yield root
    _HANDLERS.clear()


def assert_answered(case: Case, value: Any, status: int, body: dict[str, Any]) -> None:
    shown = repr(value)[:120]
    assert status < 500, f"{case} = {shown}: {status} {body}"
    if status >= 400:
        field = body.get("field")
        assert isinstance(body.get("error"), str) and isinstance(field, str), f"{case} = {shown}: {body}"
        assert field == case.field or field.startswith(f"{case.field}."), f"{case} = {shown}: {body}"


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_hostile_value_is_answered_or_refused_naming_its_field(case: Case, data: st.DataObject) -> None:
    value = data.draw(hostile(*declared(case)), label=case.field)
    [(status, body)] = call(handler_for(case.endpoint), [{"body": request_body(case, value)}])
    assert_answered(case, value, status, body)


def test_every_registered_technique_and_param_is_fuzzed() -> None:
    """The cases come from the registry: a new technique or param is fuzzed without touching this file."""
    fuzzed = {(c.spec.name, c.name) for c in CASES if not c.top_level}
    for spec in registry.registry().values():
        hints = typing.get_type_hints(spec.params)
        assert {(spec.name, name) for name in hints} <= fuzzed
    assert {c.endpoint for c in CASES} == set(registry.all_endpoints())


@pytest.mark.soak
@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_many_random_hostile_values(case: Case, data: st.DataObject) -> None:
    """The same property with fresh random draws and 200 examples per field (``make soak``)."""
    value = data.draw(hostile(*declared(case)), label=case.field)
    [(status, body)] = call(handler_for(case.endpoint), [{"body": request_body(case, value)}])
    assert_answered(case, value, status, body)
