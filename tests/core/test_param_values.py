"""Every technique's numeric knobs refuse values its code could not run with, naming the field."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from convlens import registry
from convlens.pipeline import parse_params
from convlens.schema import SchemaError


def numeric_fields(kind: type) -> list[tuple[str, str]]:
    """(technique, field) for every params field whose type admits ``kind``."""
    found = []
    for spec in registry.registry().values():
        hints = typing.get_type_hints(spec.params)
        for f in dataclasses.fields(spec.params):
            hint = hints[f.name]
            options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, type(int | None)) else (hint,)
            if kind in options:
                found.append((spec.name, f.name))
    return found


SEEDED = sorted({name for name, f in numeric_fields(int) if f == "seed"})


def test_every_synthesis_technique_and_the_embedding_take_a_seed() -> None:
    assert {s.name for s in registry.of_family("synthesis") if s.name not in ("efros_leung", "stylize")} <= set(SEEDED)
    assert "embedding" in SEEDED


@pytest.mark.parametrize("technique", SEEDED)
@pytest.mark.parametrize("seed", [2**32, 2**70, -1, "99999999999999999999999"])
def test_a_seed_beyond_what_the_generators_take_is_refused(technique: str, seed: object) -> None:
    with pytest.raises(SchemaError) as info:
        parse_params(registry.get(technique).params, {"seed": seed})
    assert info.value.field == "params.seed"


@pytest.mark.parametrize("technique", SEEDED)
def test_the_largest_seed_is_taken(technique: str) -> None:
    assert parse_params(registry.get(technique).params, {"seed": 2**32 - 1}).seed == 2**32 - 1


@pytest.mark.parametrize(("technique", "field"), numeric_fields(float))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(technique: str, field: str, value: float) -> None:
    with pytest.raises(SchemaError) as info:
        parse_params(registry.get(technique).params, {field: value})
    assert info.value.field == f"params.{field}"


@pytest.mark.parametrize(("technique", "field"), [tf for tf in numeric_fields(int) if tf[1] != "seed"])
def test_integers_beyond_64_bits_are_refused_before_they_reach_torch(technique: str, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_params(registry.get(technique).params, {field: 2**64})
    assert info.value.field == f"params.{field}"
