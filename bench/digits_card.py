"""The digits model's card, measured: what the techniques make of a plainly trained small CNN.

    .venv/bin/python bench/digits_card.py            # ~2 min on 2 cores; updates the model folder's card

On the held-out digits (``heldout.json``, 359 images):
1. Pointing game (Zhang et al. 2016) of Grad-CAM, vanilla gradient, guided backprop and occlusion on the
   strokes (pixels brighter than 1/4, one pixel of tolerance).
2. Fooling (``fooling`` technique, its defaults: L∞ ≤ 8/255, ≤ 100 steps) of the first 100 held-out digits,
   each towards a seeded random other class: the share fooled and the median smallest change found; and the
   share fooled within larger budgets (one run at 64/255, the API's largest, minimising the change).
3. A contact sheet of six digits: the input, Grad-CAM and vanilla saliency overlays (``examples.png``).
Figures go to ``card.json`` (keys ``pointing_game``, ``fooling``) in the model folder; the README quotes them.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from convlens import images, registry  # noqa: E402
from convlens.builtin import digits  # noqa: E402
from convlens.faithfulness import pointing_hits  # noqa: E402
from convlens.models import LoadedModel, load_model  # noqa: E402
from convlens.pipeline import run  # noqa: E402

METHODS = ("gradcam", "vanilla", "guided", "occlusion")
FOOLING_IMAGES = 100


def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    """(359, 1, 32, 32) pictures in [0, 1] and their labels."""
    pictures, labels = digits.load_images()
    index = torch.tensor(json.loads((digits.MODEL_DIR / "heldout.json").read_text())["indices"])
    return pictures[index], labels[index]


def maps(lm: LoadedModel, method: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    spec = registry.get(method)
    params = {"layer": lm.default_cam_layer} if method == "gradcam" else {"window": 4, "stride": 2} \
        if method == "occlusion" else {}
    return spec.run(lm.net, lm.preprocessing.normalize(x), y, spec.params(**params)).map


def pointing_game(lm: LoadedModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    strokes = x[:, 0] > 0.25
    return {m: round(float(pointing_hits(maps(lm, m, x, y), strokes, tolerance=1).float().mean()), 4)
            for m in METHODS}


def fooling(lm: LoadedModel, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> list[float]:
    """Each of the first :data:`FOOLING_IMAGES` held-out digits attacked towards a seeded random other class
    within L∞ ``epsilon``/255 and 100 steps: the smallest change found (/255), inf where none fooled."""
    generator = torch.Generator().manual_seed(0)
    smallest = []
    for i in range(FOOLING_IMAGES):
        target = int(torch.randint(0, 9, (1,), generator=generator))
        target += int(target >= int(y[i]))
        picture = images.to_pil(x[i].expand(3, -1, -1))
        [out] = run(lm, "fooling", [{"image": picture}], [target], params={"epsilon": epsilon})
        smallest.append(float(out.scalars["linf_255"]) if out.scalars["fooled"] == 1.0 else float("inf"))
        print(f"fooling within {epsilon:g}/255: {i + 1}/{FOOLING_IMAGES}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return smallest


def fooling_figures(lm: LoadedModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    """The asked figure (8/255, 100 steps) and, from one run with the largest budget the API allows, the share
    fooled within each budget (an image counts where the smallest change found fits)."""
    at_8 = fooling(lm, x, y, 8.0)
    wide = fooling(lm, x, y, 64.0)
    found = [s for s in at_8 if s != float("inf")]
    return {"images": FOOLING_IMAGES, "steps": 100, "fooled_within_8": sum(s != float("inf") for s in at_8),
            "median_linf_255_within_8": round(statistics.median(found), 3) if found else None,
            "fooled_within_budget": {str(b): sum(s <= b + 1e-3 for s in wide) for b in (8, 16, 32, 48, 64)}}


def contact_sheet(lm: LoadedModel, x: torch.Tensor, y: torch.Tensor, path: Path) -> None:
    """Six digits in rows: the input, Grad-CAM over it, vanilla saliency over it (each 4× enlarged)."""
    pick = torch.tensor([int((y == d).nonzero()[0]) for d in (0, 2, 3, 5, 7, 8)])
    xs, ys = x[pick], y[pick]
    grey = xs.expand(-1, 3, -1, -1)
    rows = [torch.cat([g, images.overlay(g, cam), images.overlay(g, sal)], dim=-1)
            for g, cam, sal in zip(grey, maps(lm, "gradcam", xs, ys), maps(lm, "vanilla", xs, ys), strict=True)]
    sheet = torch.nn.functional.interpolate(torch.cat(rows, dim=-2)[None], scale_factor=4, mode="nearest")[0]
    path.write_bytes(images.encode_png(sheet))


def main() -> int:
    torch.manual_seed(0)
    lm = load_model("digits")
    x, y = held_out()
    card_path = digits.MODEL_DIR / "card.json"
    card = json.loads(card_path.read_text())
    card["pointing_game"] = {"tolerance_px": 1, "stroke_threshold": 0.25, "n": len(y), **pointing_game(lm, x, y)}
    print("pointing game:", card["pointing_game"])
    card["fooling"] = fooling_figures(lm, x, y)
    print("fooling:", card["fooling"])
    contact_sheet(lm, x, y, digits.MODEL_DIR / "examples.png")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
