"""`convlens run` and `convlens call` reach a technique they have never seen (no CLI edit) and print its answer by
its declared outputs: images written under their declared names, scalars with their units, captions filled in (and
with ``--json``, the whole answer)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor, nn

from client import cli as api_cli
from convlens import cli as core_cli
from convlens import registry
from convlens.outputs import Image, Outputs, Scalar
from convlens.registry import bounded, technique
from convlens.results import Attribution, Progress
from convlens.schema import METHOD_PARAM
from convlens.techniques.attribution.saliency import saliency
from tests.scripted_http import Scripted, serving

UNSEEN = "unseen_gain"
UNSEEN_OUTPUTS = (Scalar("score", "the class score"), Scalar("gain", "gain applied", unit="x"),
                  Image("boosted", "gradient times the gain ({gain:g}x)", kind="map"))


@dataclass(frozen=True)
class GainParams:
    gain: float = bounded(2.0, 0.5, 4.0)


def unseen_gain(model: nn.Module, x: Tensor, target: Any = None, params: GainParams = GainParams(),
                progress: Progress | None = None, to_input: Any = None) -> Attribution:
    """Vanilla saliency, with its signed gradient scaled by ``gain`` shown as ``boosted``."""
    plain = saliency(model, x, target)
    assert plain.gradient is not None
    return Attribution(plain.map, plain.target, plain.score, plain.logits, scalars={"gain": params.gain},
                       signed={"boosted": plain.gradient * params.gain})


@pytest.fixture
def unseen(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A technique declared here, not in convlens/techniques/: the registry holds it for this test only."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.registry()))
    technique(name=UNSEEN, title="Unseen gain", family="attribution", params=GainParams,
              endpoint="unseen_endpoint", outputs=UNSEEN_OUTPUTS)(unseen_gain)
    yield UNSEEN


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    from PIL import Image as PILImage

    from convlens.builtin.dataset import render_sample

    path = tmp_path / "ring.png"
    PILImage.fromarray(render_sample(99, 4).image).save(path)
    return path


def test_run_reaches_a_technique_the_cli_never_saw(unseen: str, ring: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = core_cli.main(["run", unseen, str(ring), "--param", "gain=3", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    declared_images = {d.name for d in registry.get(unseen).declared.of("images")}
    assert {p.stem for p in out.iterdir()} == declared_images == {"input", "map", "overlay", "boosted"}
    lines = printed.out.splitlines()
    assert any(line.split()[:3] == ["gain", "3", "x"] and line.endswith("gain applied") for line in lines)
    assert any(line.split()[:2] == ["wrote", str(out / "boosted.png")]
               and line.endswith("gradient times the gain (3x)") for line in lines)
    assert core_cli.main(["run", unseen, str(ring), "--param", "gain=3", "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["technique"] == unseen and data["scalars"]["gain"] == 3.0


def catalogue_entry() -> dict[str, Any]:
    """What the info API says of the unseen technique (Spec.describe's shape)."""
    outputs = registry.FAMILY_OUTPUTS["attribution"] + Outputs(UNSEEN_OUTPUTS)
    return {"name": UNSEEN, "title": "Unseen gain", "family": "attribution", "endpoint": "unseen_endpoint",
            "inputs": ["image"], "layer": "none", "default_layer": "none", "params": [],
            "outputs": outputs.to_json()}


def test_call_reaches_a_technique_the_cli_never_saw(ring: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    png = base64.b64encode(ring.read_bytes()).decode("ascii")
    answer = {"images": {"boosted": png, "map": png}, "scalars": {"score": 4.5, "gain": 3.0}, "target": 4,
              "target_label": "ring", "topk": [], "elapsed_ms": 1.0, "weights": "builtin"}
    Scripted.script = [(200, {"techniques": [catalogue_entry()]}), (200, answer)]
    with serving() as url:
        code = api_cli.main(["call", UNSEEN, str(ring), "--param", "gain=3", "--url", url,
                             "--out", str(tmp_path / "call")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    path, body = Scripted.seen[1]
    assert path == "/predictions/unseen_endpoint" and body["params"] == {METHOD_PARAM: UNSEEN, "gain": 3}
    words = [line.split() for line in printed.out.splitlines()]
    written = [Path(w[1]) for w in words if w[0] == "wrote"]
    assert written == [tmp_path / "call" / f"{name}.png" for name in ("map", "boosted")]  # declared order
    assert [w[0] for w in words if w[0] in ("score", "gain")] == ["score", "gain"]  # the family's, then its own
    assert ["gain", "3", "x"] in [w[:3] for w in words]
