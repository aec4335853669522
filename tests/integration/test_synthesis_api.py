"""Long jobs through the real server: streamed progress with previews, cancellation from another endpoint,
limits as 4xx naming the field, attribution answered while a long job runs, and the CLI for every
synthesis technique (through the API and in process)."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from client.http import ApiError, ConvLensClient, Progress
from convlens import registry
from serve import server
from tests.integration.test_torchserve import CONVLENS, ROOT, _cli_env


def client(info: server.ServerInfo) -> ConvLensClient:
    return ConvLensClient(info.inference_url, token=info.token, timeout=300)


def test_a_streamed_job_sends_progress_with_previews_then_the_result(torchserve: server.ServerInfo) -> None:
    seen: list[Progress] = []
    result = client(torchserve).synthesis("classviz", target=5, params={"steps": 40}, on_progress=seen.append)
    assert seen and seen[-1].step == 40 and seen[-1].total == 40
    assert all(a.step < b.step for a, b in zip(seen, seen[1:], strict=False))
    previews = [p.preview for p in seen if p.preview is not None]
    assert previews and Image.open(io.BytesIO(previews[-1])).size == (64, 64)
    assert result.technique == "classviz" and result.target == 5 and result.target_label == "horizontal_stripes"
    assert result.scalars["steps"] == 40 and result.scalars["cancelled"] == 0
    assert set(result.series) == {"class_score"} and len(result.series["class_score"][1]) == 40


def test_a_job_cancelled_from_another_endpoint_stops_and_answers_with_what_it_has(
        torchserve: server.ServerInfo) -> None:
    api = client(torchserve)
    started = threading.Event()
    outcome: dict[str, object] = {}

    def on_progress(progress: Progress) -> None:
        started.set()

    def job() -> None:
        outcome["result"] = api.synthesis("neuron", params={"steps": 2000, "size": 128}, job="cancel-me-1",
                                          on_progress=on_progress)

    worker = threading.Thread(target=job)
    worker.start()
    assert started.wait(120)
    # attribution is answered while the long job still runs: synthesis has workers of its own
    explained = api.saliency((ROOT / "dashboard" / "samples" / "ring.png").read_bytes(), "gradcam")
    assert explained.target_label and worker.is_alive()
    api.cancel("cancel-me-1")
    worker.join(120)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.scalars["cancelled"] == 1.0 and result.scalars["steps"] < 2000  # type: ignore[attr-defined]
    assert "result" in result.images  # type: ignore[attr-defined]


@pytest.mark.parametrize(("technique", "images", "params", "field"), [
    ("classviz", {}, {"steps": 100_000}, "params.steps"),
    ("deepdream", {"image": "ring"}, {"size": 4096}, "params.size"),
    ("style", {"content": "ring", "style": "dots", "style_5": "dots"}, {}, "style_5"),
    ("style", {"style": "dots"}, {}, "content"),
    ("fooling", {"image": "ring"}, {"epsilon": 1000}, "params.epsilon"),
    ("classviz", {}, {"network": "vgg19"}, "params.network"),
])
def test_limits_and_bad_input_are_4xx_naming_the_field(torchserve: server.ServerInfo, technique: str,
                                                        images: dict[str, str], params: dict[str, object],
                                                        field: str) -> None:
    samples = ROOT / "dashboard" / "samples"
    data = {name: (samples / f"{sample}.png").read_bytes() for name, sample in images.items()}
    with pytest.raises(ApiError) as info:
        client(torchserve).synthesis(technique, data, target=1, params=params)
    assert 400 <= info.value.status < 500 and info.value.field == field


def test_every_synthesis_endpoint_is_served() -> None:
    assert {s.route for s in registry.of_family("synthesis")} >= {"inversion", "deepdream", "style", "classviz",
                                                                  "fooling", "texture"}


SAMPLES = ROOT / "dashboard" / "samples"


@pytest.mark.parametrize(("args", "expected"), [
    (("classviz", "--target", "dots", "--param", "steps=5"), {"result.png"}),
    (("neuron", "--layer", "features.9", "--param", "channel=3", "--param", "steps=3"), {"result.png"}),
    (("fooling", "IMAGE", "--target", "cross", "--param", "steps=5"), {"result.png", "original.png", "change.png"}),
    (("inversion", "IMAGE", "--param", "steps=3"), {"result.png", "original.png"}),
    (("deepdream", "IMAGE", "--param", "steps=2", "--param", "size=64"), {"result.png", "original.png"}),
    (("texture", "TEXTURE", "--param", "steps=2", "--param", "size=32", "--param", "source_size=32"),
     {"result.png", "source.png"}),
    (("efros_leung", "TEXTURE", "--param", "size=16", "--param", "source_size=32"), {"result.png", "source.png"}),
    (("style", "IMAGE", "TEXTURE", "STYLE2", "--param", "steps=2", "--param", "size=32",
      "--param", "style_blend=[0.25, 0.75]"), {"result.png", "content.png", "style.png", "style_2.png"}),
])
@pytest.mark.parametrize("mode", ["call", "run"])
def test_convlens_call_and_run_every_synthesis_technique(torchserve: server.ServerInfo, tmp_path: Path, mode: str,
                                                          args: tuple[str, ...], expected: set[str]) -> None:
    paths = {"IMAGE": SAMPLES / "ring.png", "TEXTURE": SAMPLES / "textures" / "brick.png",
             "STYLE2": SAMPLES / "styles" / "coffee.png"}
    argv = [str(paths[a]) if a in paths else a for a in args]
    command = [CONVLENS, mode, *argv, "--json", "--out", str(tmp_path)]
    out = subprocess.run(command, cwd=ROOT, env=_cli_env(torchserve), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert expected <= {p.name for p in tmp_path.iterdir()}
    data = json.loads(out.stdout)
    assert data["scalars"]["steps"] >= 1 if "steps" in data["scalars"] else data["scalars"]["seconds"] > 0
    if args[0] == "fooling":
        assert data["labels"]["target_label"] == "cross"


def test_the_cli_reports_a_refused_job_in_one_line(torchserve: server.ServerInfo, tmp_path: Path) -> None:
    out = subprocess.run([CONVLENS, "call", "classviz", "--target", "dots", "--param", "steps=99999", "--out",
                          str(tmp_path)], cwd=ROOT, env=_cli_env(torchserve), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "params.steps" in out.stderr and "Traceback" not in out.stderr
