"""`convlens run`, `convlens call` and `convlens job wait` print a short summary of an answer by its technique's
declared outputs (every file written, the headline numbers with integers as integers, a count of what was left out)
and, with ``--json``, the whole answer, declared integer scalars as JSON integers (issue #27)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from client import cli as api_cli
from convlens import cli as core_cli
from convlens import registry
from convlens.output_lines import JSON_HINT, summary_lines
from convlens.outputs import Outputs, Scalar
from convlens.render import Output
from convlens.schema import BATCH_INPUT, SynthesisResponse
from tests.dashboard import canned
from tests.scripted_http import Scripted, serving

MAX_LINES = 30  # a summary fits a terminal
LONG = 300  # items and series points in canned answers: far more than a summary may print
WHOLE = re.compile(r"^-?\d+$")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    from convlens.builtin.dataset import render_sample

    path = tmp_path_factory.mktemp("input") / "ring.png"
    Image.fromarray(render_sample(99, 4).image).save(path)
    return path


def rows_of(text: str) -> dict[str, list[str]]:
    """A summary's lines by their first word (``wrote`` lines keyed by their path)."""
    words = [line.split() for line in text.splitlines() if line.strip()]
    return {w[1] if w[0] == "wrote" else w[0]: w for w in words}


def check_summary(text: str, declared: Outputs, answer: dict[str, Any], out: Path) -> None:
    """Short; one ``wrote`` line per file written (and those are the answer's images); every declared integer
    scalar shown as a whole number equal to the answer's value; the last line says what ``--json`` adds."""
    lines = text.splitlines()
    assert 2 <= len(lines) < MAX_LINES, text
    written = sorted(str(p) for p in out.iterdir()) if out.exists() else []
    assert sorted(line.split()[1] for line in lines if line.startswith("wrote ")) == written, text
    assert len(written) == len(answer.get("images") or {})
    rows = rows_of(text)
    for key, value in (answer.get("scalars") or {}).items():
        found = declared.find("scalars", key)
        if key in rows and found is not None and found[0].integer:
            assert WHOLE.match(rows[key][1]) and int(rows[key][1]) == value, (key, rows[key])
    assert lines[-1].endswith(f"({JSON_HINT})"), lines[-1]
    assert not text.lstrip().startswith("{")


def check_integers(declared: Outputs, scalars: dict[str, Any]) -> None:
    """In the JSON, a declared integer scalar is an ``int`` and every other scalar stays as it was (a float)."""
    for key, value in scalars.items():
        found = declared.find("scalars", key)
        assert isinstance(value, int) == (found is not None and found[0].integer), (key, value)


# ------------------------------------------------------------------------ convlens run (in process), real answers

RUNS = {"activations": lambda ring: [str(ring)],
        "classviz": lambda ring: ["--target", "dots", "--param", "steps=5", "--param", "size=32"]}


@pytest.mark.parametrize("technique", list(RUNS))
def test_run_prints_a_short_summary_and_the_whole_answer_with_json(technique: str, ring: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    declared = registry.get(technique).declared
    out = tmp_path / "out"
    assert core_cli.main(["run", technique, *RUNS[technique](ring), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert core_cli.main(["run", technique, *RUNS[technique](ring), "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    check_summary(summary, declared, data, out)
    check_integers(declared, data["scalars"])
    rows = rows_of(summary)
    if technique == "activations":  # every channel's statistics in the JSON, none on the terminal
        assert len(data["items"]) == data["scalars"]["channels"] == data["scalars"]["shown"] > MAX_LINES
        assert rows["channels"][1] == str(data["scalars"]["channels"])
        assert f"{len(data['items'])} items" in summary.splitlines()[-1]
    else:  # the score of every step in the JSON, none on the terminal
        assert len(data["series"]["class_score"][1]) == data["scalars"]["steps"] == 5
        assert rows["predicted_class"][1] == str(data["scalars"]["predicted_class"])  # "9", never "9.0"
        assert rows["predicted_label"][1] == data["labels"]["predicted_label"]
        assert "1 series" in summary.splitlines()[-1]


# ----------------------------------------------------------------- convlens call (scripted server), real answers

def api_answer(technique: str, ring: Path) -> dict[str, Any]:
    """What the API sends for ``technique`` (its family's response body), every scalar a float as a server that
    does not know integer scalars sends them (``"predicted_class": 9.0``)."""
    from convlens.images import decode_image
    from convlens.models import load_model
    from convlens.pipeline import run
    from convlens.schema import GridsResponse
    from handlers.responses import body

    loaded = load_model("builtin")
    spec = registry.get(technique)
    inputs = {"image": decode_image(ring.read_bytes())} if spec.inputs else {}
    params = {"steps": 5, "size": 32} if spec.family == "synthesis" else {}
    [output] = run(loaded, technique, [inputs], [9 if spec.family == "synthesis" else None], None, params)
    answer = body(output, SynthesisResponse if spec.family == "synthesis" else GridsResponse)
    return {**answer, "scalars": {k: float(v) for k, v in answer["scalars"].items()}}


def call(technique: str, answer: dict[str, Any], images: list[str], out: Path, *flags: str) -> str:
    Scripted.script = [(200, {"techniques": [registry.get(technique).describe()]}), (200, answer)]
    with serving() as url:
        assert api_cli.main(["call", technique, *images, "--url", url, "--out", str(out), *flags]) == 0
    return Scripted.seen[-1][0]


@pytest.mark.parametrize("technique", list(RUNS))
def test_call_prints_a_short_summary_and_the_whole_answer_with_json(technique: str, ring: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    declared = registry.get(technique).declared
    answer = api_answer(technique, ring)
    images = [str(ring)] if registry.get(technique).inputs else []
    call(technique, answer, images, tmp_path / "out")
    summary = capsys.readouterr().out
    check_summary(summary, declared, answer, tmp_path / "out")
    call(technique, answer, images, tmp_path / "json", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == {name: str(tmp_path / "json" / f"{name}.png") for name in answer["images"]}
    assert {k: v for k, v in data.items() if k not in ("images", "scalars")} == {
        k: v for k, v in answer.items() if k not in ("images", "scalars")}  # items and series whole
    assert data["scalars"] == answer["scalars"]
    check_integers(declared, data["scalars"])
    if technique == "classviz":
        assert rows_of(summary)["predicted_class"][1] == str(int(answer["scalars"]["predicted_class"]))
        assert len(data["series"]["class_score"][1]) == 5
    else:
        assert len(data["items"]) == answer["scalars"]["channels"] > MAX_LINES


# ------------------------------------------------------- every registered technique, canned from its declaration

def canned_answer(name: str) -> dict[str, Any]:
    """An answer holding every declared output, ``LONG`` items and ``LONG``-step series, in its family's shape."""
    spec = registry.get(name)
    sections = canned.sections(name, rows=[{} for _ in range(LONG)] if spec.declared.of("items") else None)
    sections["series"] = {k: [list(range(LONG)), [0.5] * LONG] for k in sections["series"]}
    topk = [{"index": i, "label": label, "probability": 0.1} for i, label in enumerate(canned.CLASSES)]
    answer = {"technique": name, "elapsed_ms": 12.0, "weights": "builtin", "model": "builtin", "layer": None,
              "target": 9, "target_label": "dots", "topk": topk, **sections}
    if spec.family == "synthesis":  # the client reads it into its response type
        return {f.name: answer[f.name] for f in dataclasses.fields(SynthesisResponse)}
    return answer


@pytest.mark.parametrize("name", list(registry.registry()))
def test_every_technique_summary_is_short_and_names_its_files(name: str, ring: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = registry.get(name)
    answer = canned_answer(name)
    images = [str(ring)] * (2 if spec.inputs == (BATCH_INPUT,) else len(spec.inputs))
    call(name, answer, images, tmp_path / "out")
    summary = capsys.readouterr().out
    check_summary(summary, spec.declared, answer, tmp_path / "out")
    for hidden in (f"{len(answer.get('items') or [])} items", f"{len(answer.get('series') or {})} series"):
        if not hidden.startswith("0 "):  # what was left out is counted
            assert hidden in summary.splitlines()[-1], summary
    call(name, answer, images, tmp_path / "json", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data.get("items") == answer.get("items") and data.get("series") == answer.get("series")
    check_integers(spec.declared, data["scalars"])


# ---------------------------------------------------------------------------------------- convlens job wait ID

def test_job_wait_prints_the_answer_as_call_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answer = canned_answer("activations")
    done = (200, {"job": "j1", "state": "done", "step": 10, "total": 10, "status": 200, "result": answer})
    catalogue = (200, {"techniques": [registry.get("activations").describe()]})
    for flags in ([], ["--json"]):
        Scripted.script = [(200, {"job": "j1", "state": "running", "step": 4, "total": 10}), done, catalogue]
        with serving() as url:
            assert api_cli.main(["job", "wait", "j1", "--url", url, "--out", str(tmp_path / "out"), *flags]) == 0
        printed = capsys.readouterr().out
        if flags:
            data = json.loads(printed)
            assert len(data["items"]) == LONG and data["scalars"]["channels"] == 6
            assert isinstance(data["scalars"]["channels"], int)
        else:
            check_summary(printed, registry.get("activations").declared, answer, tmp_path / "out")


# ------------------------------------------------------------------------------------------- integer scalars

def test_declared_integer_scalars_are_json_integers_and_print_in_full() -> None:
    declared = Outputs((Scalar("predicted_class", "index", integer=True), Scalar("parameters", "count", integer=True),
                        Scalar("probability", "p")))
    typed = declared.typed_scalars({"predicted_class": 9.0, "parameters": 25_088_000.0, "probability": 1.0})
    assert typed == {"predicted_class": 9, "parameters": 25_088_000, "probability": 1.0}
    assert [type(v) for v in typed.values()] == [int, int, float]
    assert declared.typed_scalars({"predicted_class": 9.5})["predicted_class"] == 9.5  # not silently rounded
    schema = declared.json_schema()
    jsonschema.validate({"scalars": typed}, schema)
    with pytest.raises(jsonschema.ValidationError):  # an integer scalar that is not whole fails the answer's schema
        jsonschema.validate({"scalars": {**typed, "predicted_class": 9.5}}, schema)
    rows = rows_of("\n".join(summary_lines(declared, {"scalars": typed})))
    assert rows["parameters"][1] == "25088000" and rows["predicted_class"][1] == "9"  # not 2.509e+07, not 9.0
    output = Output("classviz", "synthesis", "builtin", "builtin",
                    scalars={"predicted_class": 9.0, "steps": 5.0, "seconds": 1.5})
    assert json.dumps(output.to_json(str)["scalars"]) == '{"predicted_class": 9, "steps": 5, "seconds": 1.5}'


def test_the_summary_shows_headlines_then_the_techniques_own_scalars_then_its_familys() -> None:
    common = Outputs((Scalar("seconds", "time spent", "s"), Scalar("grid_pad", "pixels between tiles", "px")))
    own = [Scalar(f"own_{k}", f"own number {k}") for k in range(7)]
    declared = common + [*own, Scalar("best", "the number that matters", role="headline")]
    scalars = {d.name: 1.5 for d in declared.of("scalars")}
    lines = summary_lines(declared, {"technique": "t", "scalars": scalars}, common)
    shown = [line.split()[0] for line in lines[1:-1]]
    assert shown == ["best", *(d.name for d in own)]  # the family's layout and timing come last, here cut
    assert lines[-1] == f"left out: 2 more scalars ({JSON_HINT})"
    assert [line.split()[0] for line in summary_lines(declared, {"scalars": scalars})[1:-1]] == [
        "best", "seconds", "grid_pad", *(d.name for d in own[:5])]  # without the family's: declared order


@pytest.mark.parametrize(("sample", "warned"), [("photos/cat.png", True), ("ring.png", False)])
def test_a_prediction_on_an_input_unlike_the_training_data_says_so(sample: str, warned: bool, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The built-in model knows ten synthetic shapes: a cat photo's "cross 84.7 %" comes with the warning and the
    way out; a shape of its own kind comes without."""
    image = Path(__file__).resolve().parents[1] / "dashboard" / "samples" / sample
    assert core_cli.main(["run", "classify", str(image), "--out", str(tmp_path)]) == 0
    summary = capsys.readouterr().out
    assert ("does not look like builtin's training data" in summary) == warned, summary
    assert ("make weights" in summary and "convlens model add" in summary) == warned
