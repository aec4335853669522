"""client.results.Result: a response read through its technique's declared outputs."""

from __future__ import annotations

import pytest

from client.results import Result, UndeclaredOutput
from convlens.outputs import Image, Label, Outputs, Scalar, Series
from convlens.schema import SynthesisResponse

OUTPUTS = Outputs((
    Image("original", "original: {original_label} ({original_probability:.0%})"),
    Image("result", "fooled: {result_label}", role="primary"),
    Image("layer_{layer}", "reconstruction from {layer}"),
    Scalar("original_probability", "p of the original"), Scalar("fooled", "1 when fooled", role="verdict"),
    Scalar("psnr_{layer}", "PSNR at {layer}", "dB", role="headline"),
    Label("original_label"), Label("result_label"), Series("loss", "loss per step", optional=True),
))


def response(**images: str) -> SynthesisResponse:
    return SynthesisResponse("t", {"result": "R", "original": "O", **images},
                             {"original_probability": 0.9, "fooled": 1.0, "psnr_a": 30.0, "psnr_b": 12.0},
                             {}, {"original_label": "ring", "result_label": "cross"}, 1.0, "builtin")


def test_images_come_in_declared_order_with_captions_filled_and_patterns_expanded() -> None:
    result = Result(response(layer_b="B", layer_a="A"), OUTPUTS)
    shown = [(s.key, s.caption, s.value) for s in result.images()]
    assert shown == [("original", "original: ring (90%)", "O"), ("result", "fooled: cross", "R"),
                     ("layer_b", "reconstruction from b", "B"), ("layer_a", "reconstruction from a", "A")]
    assert [s.placeholders for s in result.images("layer_{layer}")] == [{"layer": "b"}, {"layer": "a"}]


def test_access_by_declaration() -> None:
    result = Result(response(), OUTPUTS)
    assert result.image("result") == "R" and result.image(OUTPUTS.get("images", "original")) == "O"
    assert result.scalar("fooled") == 1.0 and result.label("result_label") == "cross"
    assert result.get("series", "loss") is None and not result.has("series", "loss")  # optional, absent here


@pytest.mark.parametrize("section, name", [("scalars", "linf_255"), ("images", "change"), ("labels", "network")])
def test_an_undeclared_name_is_a_clear_error(section: str, name: str) -> None:
    result = Result(response(), OUTPUTS)
    with pytest.raises(UndeclaredOutput, match=f"no {section[:-1]} '{name}' is declared; declared: "):
        if section == "scalars":
            result.scalar(name)
        elif section == "images":
            result.image(name)
        else:
            result.label(name)


def test_roles_pick_what_a_page_shows_specially() -> None:
    result = Result(response(), OUTPUTS)
    assert [s.key for s in result.with_role("primary")] == ["result"]
    assert [(s.key, s.value) for s in result.with_role("verdict")] == [("fooled", 1.0)]
    assert [(s.key, s.caption, s.declared.unit) for s in result.with_role("headline", "scalars")] == [
        ("psnr_a", "PSNR at a", "dB"), ("psnr_b", "PSNR at b", "dB")]


def test_items_keep_their_declared_fields_only() -> None:
    from convlens.outputs import Item
    from convlens.schema import CorpusResponse

    outputs = Outputs((Item("rank"), Item("label")))
    answer = CorpusResponse("t", {}, {}, {}, [{"rank": 0, "label": "a", "debug": 1}], 1.0, "builtin")
    assert Result(answer, outputs).items() == [{"rank": 0, "label": "a"}]
