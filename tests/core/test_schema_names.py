"""The names the client uses (``convlens.schema``) and the rule from a technique to its request (``route``) agree
with the registry: a technique renamed or moved to another endpoint fails here, not in a user's request."""

from __future__ import annotations

import pytest

from convlens import registry, schema
from convlens.schema import route


@pytest.mark.parametrize("spec", list(registry.registry().values()), ids=lambda s: s.name)
def test_route_asks_each_endpoint_for_the_technique_it_names(spec: registry.Spec) -> None:
    endpoint, params = route(spec.name, spec.route)
    chosen = [s for s in registry.endpoints()[endpoint] if s.name == params[registry.METHOD_PARAM]]
    assert chosen == [spec]


def test_route_gives_each_caller_its_own_params() -> None:
    first = route("vanilla", "saliency")
    first[1]["alpha"] = 0.3
    assert route("vanilla", "saliency") == ("saliency", {schema.METHOD_PARAM: "vanilla"})
    with pytest.raises(ValueError, match="name and an endpoint"):
        route("", "saliency")


def test_the_shared_names_are_the_registry_s() -> None:
    assert registry.METHOD_PARAM == schema.METHOD_PARAM and registry.BATCH_INPUT == schema.BATCH_INPUT
    assert schema.INFO_ENDPOINT == registry.info_endpoint()
    assert registry.get(schema.CLASSIFY).route == schema.CLASSIFY
    assert len(registry.endpoints()[schema.SALIENCY_ENDPOINT]) > 1  # several techniques, picked by the method
    assert registry.get(schema.CODES).route == schema.CODES
    assert registry.get(schema.CODES).inputs == (schema.BATCH_INPUT,)
    assert registry.get(schema.MODEL_FILES).route == schema.DATASET_ENDPOINT
    assert registry.get(schema.DATASETS).route == schema.DATASET_ENDPOINT


def test_the_family_names_and_the_dataset_param_the_dashboard_uses_are_the_registrys() -> None:
    assert (schema.PREDICTION, schema.ATTRIBUTION, schema.ACTIVATIONS, schema.SYNTHESIS, schema.CORPUS) == \
        registry.FAMILIES
    takes_dataset = [s.name for s in registry.of_family("corpus")
                     if schema.DATASET_PARAM in {p["name"] for p in registry.describe_params(s.params)}]
    assert {"embedding", "neighbours", "top_patches"} <= set(takes_dataset)
