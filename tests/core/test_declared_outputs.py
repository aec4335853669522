"""Every technique answers exactly what it declares (:mod:`convlens.outputs`), and the declaration API itself.

Parametrised over :func:`convlens.registry.registry`: a new technique is run through the pipeline with its
quick settings the moment it is declared, and its images, scalars, labels, series and item fields must be the
declared ones (an undeclared key, or a required one missing, fails here rather than on a page). Variants run
the params under which a technique answers its optional keys, and check that those keys do appear.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import pytest
from PIL import Image as PILImage

from convlens import registry
from convlens.corpus import datasets as store
from convlens.models import LoadedModel, load_model
from convlens.outputs import (
    COLUMN_DTYPES,
    INTEGER,
    SECTIONS,
    Declared,
    Image,
    Item,
    Label,
    OutputMismatch,
    Outputs,
    Scalar,
    Section,
    Series,
    caption,
    caption_fields,
)
from convlens.pipeline import run
from tests.core.test_contract import quick_params, tiny_loaded

DATASET = "set"
# Settings of the corpus techniques, by param name: small, over the dataset the module makes.
CORPUS_QUICK: dict[str, object] = {"dataset": DATASET, "query": 0, "k": 3, "n": 4, "randomisation_images": 2,
                                   "projection": "pca"}


@pytest.fixture(scope="module")
def corpus_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModel]:
    """The built-in model (faithfulness measures nothing else) and a 30-image dataset in a fresh data folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(store.DATA_DIR_ENV, str(tmp_path_factory.mktemp("data")))
        store.builtin(DATASET, 30)
        yield load_model("builtin")


def picture(i: int = 0) -> PILImage.Image:
    return PILImage.new("RGB", (20, 16), (30 * i, 90, 200))


def param_names(spec: registry.Spec) -> set[str]:
    return {f.name for f in dataclasses.fields(spec.params)}


def answer(spec: registry.Spec, loaded: LoadedModel | None, params: Mapping[str, Any] = {},
           extra: Mapping[str, Any] = {}) -> list[Any]:
    """``spec`` through the pipeline with its quick settings (and ``params``): two requests with a target each,
    or for a corpus technique one request over the module's dataset (a batch input gets two images)."""
    if spec.family == "corpus":
        assert loaded is not None
        settings = {**quick_params(spec), **{k: v for k, v in CORPUS_QUICK.items() if k in param_names(spec)},
                    **params}
        inputs = {name: [picture(0), picture(1)] if name == registry.BATCH_INPUT else picture()
                  for name in spec.inputs}
        return run(loaded, spec.name, [{**inputs, **extra}], params=settings)
    requests = [{**{name: picture(i) for name in spec.inputs}, **extra} for i in range(2)]
    return run(tiny_loaded(), spec.name, requests, targets=[1, 2], params={**quick_params(spec), **params})


def sections(out: Any) -> dict[Section, list[str]]:
    return {"images": list(out.images), "scalars": list(out.scalars), "labels": list(out.labels),
            "series": list(out.series), "items": sorted({k for item in out.items for k in item}),
            "columns": list(getattr(out, "columns", {}))}


def fill_every_caption(declared: Outputs, out: Any) -> None:
    """Each present output's caption fills from the result itself (a field it names is in the result, unless
    that field is an optional output this run did not give)."""
    values = {**out.scalars, **out.labels}
    optional = {d.name for d in declared.declared if d.optional and d.section in ("scalars", "labels")}
    for section, keys in sections(out).items():
        for key in keys:
            found = declared.find(section, key)
            assert found is not None
            row, placeholders = found
            absent = {f for f in caption_fields(row.caption) if f not in values and f not in placeholders}
            assert absent <= optional, (key, absent)
            if not absent:
                assert caption(row, values, placeholders) == row.caption.format(**values, **placeholders)


def check(spec: registry.Spec, outs: list[Any]) -> None:
    assert outs
    for out in outs:
        assert spec.declared.mismatches(sections(out)) == [], spec.name
        fill_every_caption(spec.declared, out)


@pytest.mark.parametrize("name", list(registry.registry()))
def test_every_technique_answers_what_it_declares(name: str, corpus_model: LoadedModel) -> None:
    spec = registry.get(name)
    outs = answer(spec, corpus_model if spec.family == "corpus" else None)
    check(spec, outs)
    schema = spec.describe()["response_schema"]  # what the info API sends
    for out in outs:
        body = out.to_json(lambda image: "iVBORw0KGgo=")
        jsonschema.validate(body, schema)
        renamed = {**body, "scalars": {**body["scalars"], "renamed_key": 1.0}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(renamed, schema)
        for section in ("images", "scalars", "labels"):
            required = schema["properties"][section]["required"]
            if required:  # a declared key the answer lacks fails too
                with pytest.raises(jsonschema.ValidationError):
                    jsonschema.validate({**body, section: {k: v for k, v in body[section].items()
                                                           if k != required[0]}}, schema)


# (technique, params, extra inputs, outputs that must appear: "section.key")
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("activations", {"channel": 1}, {}, ["images.focus", "images.overlay"]),
    ("filters", {"layer": "features.3"}, {}, ["items.input"]),
    ("occlusion", {"window": 4, "stride": 2, "refinement": 0.5}, {}, ["scalars.refined", "images.logit_drop"]),
    ("guided", {"layer": "features.3", "channel": 1}, {}, ["images.gradient"]),
    ("neuron", {"unit": "neuron"}, {}, ["series.neuron", "scalars.final_neuron"]),
    ("neuron", {"unit": "channel"}, {}, ["series.channel", "scalars.final_channel"]),
    ("fooling", {"loss": "cross_entropy"}, {}, ["series.cross_entropy", "scalars.final_cross_entropy"]),
    ("fooling", {"epsilon": 64, "lr": 16, "steps": 40}, {}, ["series.margin", "scalars.minimising_rounds"]),
    ("inversion", {"tv_weight": 0.5}, {}, ["series.total_variation", "scalars.final_total_variation"]),
    ("inversion", {"tv_weight": 0}, {}, ["scalars.psnr"]),
    ("style", {}, {"style_2": picture(3)}, ["images.style_2"]),
    ("datasets", {"action": "images", "name": DATASET, "indices": "0,3", "size": 16}, {},
     ["images.i0", "images.i3", "items.index", "items.file"]),
    ("datasets", {"action": "sheet", "name": DATASET, "count": 8, "size": 8}, {}, ["images.sheet", "scalars.start"]),
    ("datasets", {"action": "builtin", "name": "made", "n": 5}, {}, ["items.name", "items.largest_class"]),
    ("neighbours", {"space": "code", "query": None}, {"image": picture(2)}, ["images.code", "scalars.code_exact"]),
    ("neighbours", {"space": "both"}, {}, ["images.pixel", "scalars.pixel_same_label", "scalars.code_same_label"]),
    ("top_patches", {"channel": 0}, {}, ["images.grid", "items.rank"]),
    ("embedding", {"grid": 4, "tile": 8}, {}, ["images.grid"]),
    ("embedding", {"compact": True, "channel": 1}, {},
     ["columns.activation", "columns.x", "items.column", "items.code", "items.name"]),
    ("embedding", {"compact": True, "files": "0,2"}, {}, ["items.index", "items.file"]),
    ("model_files", {"action": "list"}, {}, ["scalars.models", "scalars.upload_enabled"]),
]


@pytest.mark.parametrize(("name", "params", "extra", "expected"), VARIANTS,
                         ids=[f"{v[0]}-{'-'.join(f'{k}={x}' for k, x in v[1].items()) or 'inputs'}" for v in VARIANTS])
def test_optional_outputs_appear_under_their_params(name: str, params: dict[str, Any], extra: dict[str, Any],
                                                    expected: list[str], corpus_model: LoadedModel) -> None:
    spec = registry.get(name)
    outs = answer(spec, corpus_model if spec.family == "corpus" else None, params, extra)
    check(spec, outs)
    for out in outs:
        present = {f"{section}.{key}" for section, keys in sections(out).items() for key in keys}
        assert set(expected) <= present, sorted(set(expected) - present)


def test_a_grid_all_from_the_cache_still_says_its_steps_and_time() -> None:
    """The second identical style grid takes every cell from the cache: no optimisation ran, and the answer
    still holds what every synthesis answer holds (its time) and the steps it ran (none)."""
    spec = registry.get("style_grid")
    first = answer(spec, None, {"seed": 7})  # settings no other test uses: its cells are computed
    again = answer(spec, None, {"seed": 7})
    check(spec, again)
    assert all(out.scalars["cached_cells"] == out.scalars["cells"] for out in again)
    assert all(out.scalars["steps"] == 0 and not out.series for out in again)
    assert all(out.scalars["steps"] > 0 for out in first[:1])


def test_a_changed_key_fails_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline checks each result against the declaration: a renamed scalar is an OutputMismatch."""
    spec = registry.get("gradcam")
    renamed = dataclasses.replace(spec, outputs=tuple(
        dataclasses.replace(d, name="layer_rows") if d.name == "layer_height" else d for d in spec.outputs))
    monkeypatch.setitem(registry._REGISTRY, "gradcam", renamed)
    with pytest.raises(OutputMismatch, match="scalars.layer_height is not declared.*scalars.layer_rows is declared"):
        run(tiny_loaded(), "gradcam", [{"image": picture()}], targets=[1])


def test_every_declaration_is_well_formed() -> None:
    for spec in registry.registry().values():
        rows = spec.declared.declared
        assert len({(d.section, d.name) for d in rows}) == len(rows), spec.name
        for d in rows:
            assert d.section in SECTIONS and d.caption, (spec.name, d.name)
            kinds = {"images": ("picture", "map", "grid", "curve"), "scalars": ("", INTEGER),
                     "columns": tuple(COLUMN_DTYPES)}.get(d.section, ("",))
            assert d.kind in kinds, d
        spec.declared.check_captions(spec.name)
        assert Outputs.from_json(spec.describe()["outputs"]) == spec.declared


# ------------------------------------------------------------------------------------------------- outputs.py


DECLARED = Outputs((
    Image("result", "fooled: {result_label} ({result_probability:.0%})"),
    Image("layer_{layer}", "inverted from {layer}"),
    Image("cell_{row}_{col}", "row {row}, column {col}"),
    Scalar("psnr_{layer}", "PSNR from {layer}", "dB"),
    Scalar("psnr", "PSNR of the result", "dB"),
    Scalar("result_probability", "probability"),
    Scalar("cancelled", "1 when stopped", optional=True),
    Label("result_label", "class"),
    Series("loss", "loss per step"),
    Item("rank", "0 first"), Item("file", "its file", optional=True),
))


def test_patterns_match_their_keys_and_plain_names_win() -> None:
    layer = DECLARED.get("images", "layer_{layer}")
    assert layer.match("layer_features.13") == {"layer": "features.13"}
    assert layer.match("layer_") is None and layer.match("layers_x") is None
    assert DECLARED.get("images", "cell_{row}_{col}").match("cell_10_2") == {"row": "10", "col": "2"}
    assert Image("a_{x}_{x}").match("a_1_1") == {"x": "1"} and Image("a_{x}_{x}").match("a_1_2") is None
    assert Image("x.{n}").match("xy3") is None  # the literal part is literal, not a regular expression
    assert DECLARED.find("scalars", "psnr") == (DECLARED.get("scalars", "psnr"), {})
    assert DECLARED.find("scalars", "psnr_conv1") == (DECLARED.get("scalars", "psnr_{layer}"), {"layer": "conv1"})
    assert DECLARED.keys_of("scalars", "psnr_{layer}", ["psnr", "psnr_a", "seconds"]) == [("psnr_a", {"layer": "a"})]


def test_mismatches_name_undeclared_and_missing_keys_but_not_optional_ones() -> None:
    full: dict[Section, list[str]] = {
        "images": ["result", "layer_a", "cell_0_1"], "scalars": ["psnr", "psnr_a", "result_probability"],
        "labels": ["result_label"], "series": ["loss"], "items": ["rank"]}
    assert DECLARED.mismatches(full) == []
    assert DECLARED.mismatches({**full, "scalars": ["psnr_a", "result_probability", "steps"],
                                "items": ["rank", "extra"]}) == [
        "scalars.steps is not declared", "scalars.psnr is declared but missing", "items.extra is not declared"]
    assert DECLARED.mismatches({**full, "images": ["result"]}) == []  # a pattern may match no key
    with pytest.raises(OutputMismatch, match="t: .*labels.result_label is declared but missing"):
        DECLARED.check("t", {**full, "labels": []})


def test_no_items_at_all_miss_no_field() -> None:
    full: dict[Section, list[str]] = {
        "images": ["result"], "scalars": ["psnr", "result_probability"], "labels": ["result_label"], "series": ["loss"]}
    assert DECLARED.mismatches({**full, "items": []}) == []
    assert DECLARED.mismatches({**full, "items": ["file"]}) == ["items.rank is declared but missing"]


def test_a_technique_refines_a_family_output_in_place() -> None:
    family = Outputs((Image("input", "what the model saw", optional=True), Scalar("score", "the value")))
    merged = family + (Scalar("score", "the class logit"), Image("extra", "more"))
    assert [(d.name, d.caption) for d in merged.declared] == [
        ("input", "what the model saw"), ("score", "the class logit"), ("extra", "more")]
    assert (family + (Image("input", "the image"),)).get("images", "input").optional is False


def test_captions_are_checked_at_registration() -> None:
    DECLARED.check_captions("t")
    with pytest.raises(ValueError, match=r"uses \{missing\}"):
        Outputs((Image("r", "{missing}"),)).check_captions("t")
    with pytest.raises(ValueError, match=r"uses \{layer\}"):  # a placeholder of another output's name
        Outputs((Image("a_{layer}", "a"), Image("b", "{layer}"))).check_captions("t")
    with pytest.raises(ValueError, match="positional"):
        Outputs((Image("r", "{} and {0}"),)).check_captions("t")
    with pytest.raises(ValueError, match="both a scalar and a label"):
        Outputs((Scalar("rows", "n"), Label("rows", "words"), Image("r", "{rows}"))).check_captions("t")
    with pytest.raises(ValueError, match=r"uses \{p\}"):  # a pattern scalar is not a value a caption can name
        Outputs((Scalar("p_{x}", "p"), Image("r", "{p}"))).check_captions("t")


def test_captions_fill_from_values_and_fall_back_to_their_words() -> None:
    result = DECLARED.get("images", "result")
    assert caption(result, {"result_label": "cat", "result_probability": 0.5}) == "fooled: cat (50%)"
    assert caption(result, {"result_label": "cat"}) == "fooled"
    assert caption(result, {"result_label": "cat", "result_probability": None}) == "fooled"  # a null value
    assert caption(DECLARED.get("images", "layer_{layer}"), {}, {"layer": "conv1"}) == "inverted from conv1"
    assert caption(Image("change", "change (L∞ = {linf:.1f}/255)"), {}) == "change"
    assert caption(Image("bare", "{x}"), {}) == "bare"


def test_declarations_round_trip_through_json() -> None:
    rows = DECLARED.to_json()
    assert Outputs.from_json(rows) == DECLARED
    assert rows[3] == {"section": "scalars", "name": "psnr_{layer}", "caption": "PSNR from {layer}", "kind": "",
                       "unit": "dB", "optional": False, "role": ""}
    assert Declared.from_json({"section": "labels", "name": "x"}) == Label("x")

