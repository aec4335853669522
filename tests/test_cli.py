"""The ``convlens`` command line, run as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def convlens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "convlens", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_builtin_eval_prints_accuracy_last() -> None:
    out = convlens("builtin", "eval", "--n", "200", "--seed", "3")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"accuracy=(\d\.\d+)", last)
    assert match and float(match.group(1)) >= 0.95


def test_faithfulness_prints_pointing_game_last() -> None:
    out = convlens("faithfulness", "--method", "gradcam", "--n", "50", "--tolerance", "2")
    assert out.returncode == 0, out.stderr
    match = re.fullmatch(r"pointing_game=(\d\.\d+)", out.stdout.strip().splitlines()[-1])
    assert match and float(match.group(1)) >= 0.85


def test_sample_writes_images_and_masks(tmp_path: Path) -> None:
    out = convlens("builtin", "sample", "--n", "3", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 6 and sum(n.endswith("_mask.png") for n in names) == 3


def test_explain_writes_maps(tmp_path: Path) -> None:
    from PIL import Image

    from convlens.builtin.dataset import render_sample

    image = tmp_path / "ring.png"
    Image.fromarray(render_sample(99, 4).image).save(image)
    out = convlens("explain", str(image), "--method", "gradcam", "--out", str(tmp_path / "maps"))
    assert out.returncode == 0, out.stderr
    assert "(ring)" in out.stdout and "weights=builtin" in out.stdout
    assert {p.name for p in (tmp_path / "maps").iterdir()} == {"gradcam_input.png", "gradcam_map.png",
                                                               "gradcam_overlay.png"}


@pytest.mark.parametrize(("args", "message"), [
    (("layers", "vgg16"), "convlens weights fetch vgg16"),
    (("explain", "/no/such/image.png"), "No such file"),
])
def test_errors_are_one_clear_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "convlens", *args], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "TORCH_HOME": str(tmp_path), "HOME": str(tmp_path)})
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr


def test_layers_lists_the_catalogue() -> None:
    out = convlens("layers", "resnet18", "--random")
    assert out.returncode == 0, out.stderr
    assert "default Grad-CAM layer: layer4" in out.stdout
    assert re.search(r"^layer4\s+Sequential\s+512x7x7\s+435\s+32$", out.stdout, re.M)


def test_run_any_technique_in_process_with_a_target_label(tmp_path: Path) -> None:
    from PIL import Image

    from convlens.builtin.dataset import render_sample

    image = tmp_path / "ring.png"
    Image.fromarray(render_sample(99, 4).image).save(image)
    out = convlens("run", "occlusion", str(image), "--target", "Ring", "--param", "window=8", "--param", "stride=8",
                   "--json", "--out", str(tmp_path / "occ"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["target"] == 4 and data["target_label"] == "ring" and data["scalars"]["windows"] == 64
    assert {p.name for p in (tmp_path / "occ").iterdir()} == {"input.png", "map.png", "overlay.png", "logit_drop.png"}
    out = convlens("run", "filters", "--json", "--out", str(tmp_path / "filters"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["layer"] == "features.0" and (tmp_path / "filters" / "grid.png").is_file()
    bad = convlens("run", "filters", str(image))
    assert bad.returncode == 1 and "filters takes no image" in bad.stderr
    bad = convlens("run", "gradcam", str(image), "--target", "hexagon")
    assert bad.returncode == 1 and "neither a class index nor a class label" in bad.stderr


def test_the_console_script_knows_the_api_commands_and_the_core_ones() -> None:
    script = str(Path(sys.executable).with_name("convlens"))
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for command in ("call", "serve", "run", "explain", "faithfulness", "builtin"):
        assert command in out.stdout
