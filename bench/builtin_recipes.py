"""The built-in model's training recipes scored on every goal they trade against (MODEL_CARD.md, "Robustness").

    PYTHONPATH=. .venv/bin/python bench/builtin_recipes.py --train out/n015.pt input_noise=0.15   # one recipe
    PYTHONPATH=. .venv/bin/python bench/builtin_recipes.py convlens/builtin/builtin.pt out/*.pt   # one row each
    PYTHONPATH=. .venv/bin/python bench/builtin_recipes.py --attacks convlens/builtin/builtin.pt  # attack variants

A row: held-out accuracy (seed 1, 2000), strict pointing game of Grad-CAM and vanilla saliency (200 held-out
images), top-1 and Grad-CAM pointing on the drawn sets of ``tests/core/drawn.py`` (seeds 123 × 20 and 999 × 10
per class), and targeted fooling on 100 held-out images (a seeded random other class, the targets of
``bench/synthesis.py``; L∞ ≤ 8/255, stop at the target, ≤ 100 steps): the product's ``fooling`` technique with
its default params, one image at a time, and, batched by :func:`fool`, the previous attack (signed steps of 1/255
on the cross-entropy). ``--attacks`` compares attacks on 30 images (Carlini & Wagner
2017 margin loss, random start, momentum of Dong et al. 2018, a cosine step schedule) at 100 and 1000 steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from convlens import images  # noqa: E402
from convlens.builtin.dataset import HELDOUT_SEED, render_batch  # noqa: E402
from convlens.builtin.net import normalize  # noqa: E402
from convlens.builtin.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint, train  # noqa: E402
from convlens.faithfulness import pointing_game, pointing_hits  # noqa: E402
from convlens.models import LoadedModel, load_model  # noqa: E402
from convlens.pipeline import run  # noqa: E402
from convlens.techniques.attribution.gradcam import grad_cam  # noqa: E402
from tests.core.drawn import drawn_set  # noqa: E402


@dataclass(frozen=True)
class Attack:
    loss: str = "ce"  # "ce" (the product's) or "cw" (largest other logit − target logit)
    step: float = 1.0  # in 1/255
    random_start: bool = False
    momentum: float = 0.0  # MI-FGSM decay (0: none)
    cosine: bool = False  # step size falls from ``step`` to step/20 along a half cosine


PRODUCT = Attack(loss="cw", step=4.0, momentum=0.9, cosine=True)  # FoolingParams() defaults, batched


def held_out(n: int) -> tuple[Tensor, Tensor]:
    """(n, 3, 64, 64) held-out images in [0, 1] and the seeded random other class of bench/synthesis.py."""
    images, _, labels = render_batch(HELDOUT_SEED, n, 64)
    generator, targets = torch.Generator().manual_seed(0), []
    for label in labels:
        t = int(torch.randint(0, 9, (1,), generator=generator))
        targets.append(t + int(t >= int(label)))
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, torch.tensor(targets)


def fool(net: nn.Module, x: Tensor, target: Tensor, attack: Attack = Attack(), epsilon: float = 8.0,
         steps: int = 100, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Targeted L∞ attack on a batch, each image frozen once the model says its target.

    → fooled (N,) bool, forward passes used (N,), L∞ of the change in 1/255 (N,)."""
    eps, generator = epsilon / 255, torch.Generator().manual_seed(seed)
    delta = torch.zeros_like(x)
    if attack.random_start:
        delta = ((torch.rand(x.shape, generator=generator) * 2 - 1) * eps + x).clamp(0, 1) - x
    fooled, used, linf = torch.zeros(len(x), dtype=torch.bool), torch.full((len(x),), steps), torch.zeros(len(x))
    velocity = torch.zeros_like(x)
    for s in range(steps):
        d = delta.clone().requires_grad_(True)
        logits = net(normalize(x + d))
        new = (logits.argmax(1) == target) & ~fooled
        used[new], linf[new], fooled = s + 1, d.detach()[new].abs().amax((1, 2, 3)) * 255, fooled | new
        if fooled.all() or s == steps - 1:
            break
        if attack.loss == "ce":
            loss = F.cross_entropy(logits, target, reduction="sum")
        else:
            other = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), -math.inf).amax(1)
            loss = (other - logits.gather(1, target[:, None])[:, 0]).sum()
        (grad,) = torch.autograd.grad(loss, d)
        if attack.momentum > 0:
            velocity = attack.momentum * velocity + grad / grad.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
            grad = velocity
        size = attack.step / 255
        if attack.cosine:
            size = size * (0.5 * (1 + math.cos(math.pi * s / steps)) + 0.05)
        with torch.no_grad():
            stepped = (delta - size * grad.sign()).clamp(-eps, eps)
            delta = torch.where(fooled.view(-1, 1, 1, 1), delta, (x + stepped).clamp(0, 1) - x)
    return fooled, used, linf


def product_fooling(loaded: LoadedModel, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The product's ``fooling`` technique (default params: L∞ 8/255, 100 steps) on each image of ``x``
    (N, 3, 64, 64) in [0, 1] → fooled (N,) bool, steps taken (N,), L∞ of the change in 1/255 (N,)."""
    rows = [run(loaded, "fooling", [{"image": images.to_pil(image)}], [int(t)])[0].scalars
            for image, t in zip(x, target, strict=True)]
    return (torch.tensor([r["fooled"] == 1.0 for r in rows]), torch.tensor([r["steps"] for r in rows]),
            torch.tensor([r["linf_255"] for r in rows]))


def drawn_scores(loaded: LoadedModel) -> tuple[float, float]:
    """Top-1 and Grad-CAM pointing on the drawn sets tests/core/test_drawn.py checks."""
    right, hits = [], []
    for drawing in drawn_set(123, 20) + drawn_set(999, 10):
        _, x = loaded.prepare(drawing.image)
        mask = loaded.preprocessing.display(Image.fromarray(drawing.mask.astype(np.uint8) * 255))[0] >= 0.5
        result = grad_cam(loaded.net, x, torch.tensor([drawing.label]))
        right.append(int(result.logits.argmax()) == drawing.label)
        hits.append(bool(pointing_hits(result.map, mask[None])[0]))
    return float(np.mean(right)), float(np.mean(hits))


def score(path: Path, n_fool: int = 100) -> str:
    """One markdown row for the checkpoint at ``path``."""
    net, meta = load_checkpoint(path)
    net.requires_grad_(False)
    base = load_model("builtin")
    loaded = LoadedModel("builtin", net, base.classes, base.preprocessing, base.weights)
    gradcam, vanilla = (pointing_game(loaded, m, n=200).score for m in ("gradcam", "vanilla"))
    top1, pointing = drawn_scores(loaded)
    x, target = held_out(n_fool)
    fooled, used, linf = product_fooling(loaded, x, target)
    fooled_ce = int(fool(net, x, target)[0].sum())
    config = meta["train_config"]
    recipe = ", ".join(f"{k} {v}" for k, v in config.items()
                       if k != "threads" and v != getattr(TrainConfig(), k))
    return (f"| {recipe or 'defaults'} | {evaluate(net):.4f} | {gradcam:.3f} | {vanilla:.3f} | {top1:.2f} | "
            f"{pointing:.2f} | {int(fooled.sum())}/{n_fool} | {used[fooled].float().median():.0f} | "
            f"{linf[fooled].median():.2f} | {fooled_ce}/{n_fool} |")


def train_recipe(out: Path, overrides: list[str]) -> None:
    """Train TrainConfig() with ``key=value`` overrides (one thread) and save the checkpoint at ``out``."""
    defaults = TrainConfig()
    values = {k: type(getattr(defaults, k))(v) for k, v in (o.split("=", 1) for o in overrides)}
    config = dataclasses.replace(defaults, threads=1, **values)
    started = time.perf_counter()
    model, _ = train(config)
    minutes = (time.perf_counter() - started) / 60
    save_checkpoint(model, out, {"heldout_accuracy": evaluate(model), "train_minutes": round(minutes, 2),
                                 "train_config": dataclasses.replace(config, threads=defaults.threads)})
    print(f"saved {out} after {minutes:.1f} min", flush=True)


def compare_attacks(path: Path, n: int = 30) -> None:
    net, _ = load_checkpoint(path)
    net.requires_grad_(False)
    x, target = held_out(n)
    variants = [Attack(), Attack(loss="cw"), Attack(step=2, cosine=True), Attack(loss="cw", step=2, cosine=True),
                Attack(momentum=1.0), Attack(loss="cw", momentum=1.0), Attack(loss="cw", step=2, cosine=True,
                                                                          random_start=True),
                Attack(loss="cw", step=2, cosine=True, random_start=True, momentum=0.9), PRODUCT]
    for steps in (100, 1000):
        for attack in variants if steps == 100 else (variants[0], variants[-1]):
            fooled, used, _ = fool(net, x, target, attack, steps=steps)
            print(f"| {steps} | {attack} | {int(fooled.sum())}/{n} | {used[fooled].float().median():.0f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoints (with --train: the output, then K=V ...)")
    parser.add_argument("--train", action="store_true", help="train one recipe: OUT key=value ...")
    parser.add_argument("--attacks", action="store_true", help="compare attack variants on the checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.train:
        train_recipe(args.paths[0], [str(p) for p in args.paths[1:]])
    elif args.attacks:
        compare_attacks(args.paths[0])
    else:
        print("| recipe (changes from TrainConfig()) | accuracy | Grad-CAM | vanilla | drawn top-1 | drawn pointing | "
              "fooled (8/255, 100 steps) | median steps | median L∞ (/255) | fooled, previous attack |")
        for path in args.paths:
            print(score(path), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
