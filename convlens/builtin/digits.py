"""Train DigitsNet on scikit-learn's handwritten digits and write its model folder.

    python -m convlens.builtin.digits --out DIR [--seed 0] [--epochs 40]

Data: ``sklearn.datasets.load_digits`` (1,797 8×8 images with values 0..16, bright ink on a dark
background; the UCI optdigits test set, Alpaydin & Kaynak 1998), scaled to [0, 1] and upscaled
bilinearly to 32×32. A stratified 20 % is held out with a fixed seed, whatever the training seed.
The architecture is ``models/digits/net.py``, imported from that file (the folder ships it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MODEL_DIR = Path(__file__).with_name("models") / "digits"
NET_FILE = MODEL_DIR / "net.py"
NAME = "digits"
CLASSES = tuple(str(d) for d in range(10))
SIZE = 32
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0
CAM_LAYER = "features.6"  # the last 16×16 stage: an 8×8 map (4 px a cell) is coarser than a stroke
CODE_LAYER = "code.2"

Callback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults produce the shipped weights."""

    seed: int = 0  # torch.manual_seed, batch order and shifts
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3  # Adam, cosine-annealed to 0 over the run
    shift: int = 2  # random translation of ±shift px per sample (zero padding)
    threads: int = 1


def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits → images (N,1,32,32) float32 in [0, 1] and labels (N,) int64, in sklearn's order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return images, torch.from_numpy(digits.target.astype(np.int64))


def heldout_split(labels: torch.Tensor, fraction: float = HELDOUT_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split → (train, held-out) sorted int64 indices; ``round(fraction · n_c)`` of each class held out."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    held = [rng.permutation(np.flatnonzero(y == c))[: round(fraction * int((y == c).sum()))] for c in np.unique(y)]
    heldout = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), heldout), heldout


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of every pixel of (N,1,H,W) images, rounded to 4 decimals (the manifest's)."""
    x = images.double()
    return round(float(x.mean()), 4), round(float(x.std()), 4)


def load_net_class(path: Path = NET_FILE) -> type[nn.Module]:
    """``DigitsNet`` from the model folder's ``net.py`` (the only definition)."""
    spec = importlib.util.spec_from_file_location("convlens_digits_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DigitsNet


def random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """(N,C,H,W) images, each translated by its own integer (dy, dx) in [-max_shift, max_shift]; zeros enter."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)
    rows = (torch.arange(h)[None] + dy[:, None])[:, None, :, None]  # (N,1,H,1)
    cols = (torch.arange(w)[None] + dx[:, None])[:, None, None, :]  # (N,1,1,W)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None], rows, cols]


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N,1,H,W) images in [0, 1] → model input."""
    return (images - mean) / std


def train(images: torch.Tensor, labels: torch.Tensor, mean: float, std: float, config: TrainConfig = TrainConfig(),
          callback: Callback | None = None) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a DigitsNet from scratch on (N,1,32,32) images in [0, 1] → (eval-mode model, per-step history).

    Plain training: Adam, cross-entropy, random shifts; no input noise, no adversarial examples.
    ``callback(step, total_steps, {"loss", "epoch", "lr"})`` is called after every step.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = load_net_class()(num_classes=len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    history: list[dict[str, float]] = []
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            x = normalize(random_shift(images[idx], config.shift, gen), mean, std)
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            record = {"loss": float(loss.item()), "epoch": float(epoch), "lr": float(scheduler.get_last_lr()[0])}
            scheduler.step()
            history.append(record)
            if callback is not None:
                callback(len(history), total, record)
    return model.eval(), history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: float, std: float, batch_size: int = 500) -> torch.Tensor:
    """(N,1,32,32) images in [0, 1] → (N,) predicted labels."""
    return torch.cat([model(normalize(images[s : s + batch_size], mean, std)).argmax(1)
                      for s in range(0, len(images), batch_size)])


def accuracies(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Overall accuracy and accuracy per class name."""
    right = (predicted == labels).double()
    return float(right.mean()), {name: float(right[labels == c].mean()) for c, name in enumerate(CLASSES)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_text(mean: float, std: float) -> str:
    """``model.toml`` for the folder."""
    return f'''name = "{NAME}"
description = """Handwritten digits 0-9 (scikit-learn's 8x8 digits, upscaled to 32x32 grayscale, bright ink on \
a dark background). A small plain CNN trained by convlens/builtin/digits.py; see README.md."""

[architecture]
source = "python:net.py:DigitsNet"
kwargs = {{ num_classes = {len(CLASSES)} }}

[weights]
file = "weights.safetensors"

[classes]
file = "classes.txt"

[preprocessing]
input_size = {SIZE}
resize_size = {SIZE}
channels = 1
mean = [{mean!r}]
std = [{std!r}]

[layers]
cam = "{CAM_LAYER}"
code = "{CODE_LAYER}"
'''


def write_folder(out: Path, model: nn.Module, mean: float, std: float, heldout: np.ndarray,
                 card: dict[str, object]) -> dict[str, object]:
    """Write the model folder; returns the card with ``weights_sha256`` filled in."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != MODEL_DIR.resolve():
        shutil.copyfile(NET_FILE, out / "net.py")
    weights = out / "weights.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "model.toml").write_text(manifest_text(mean, std))
    split = {"split_seed": SPLIT_SEED, "fraction": HELDOUT_FRACTION, "source": "sklearn.datasets.load_digits",
             "indices": heldout.tolist()}
    (out / "heldout.json").write_text(json.dumps(split) + "\n")
    card = {**card, "weights_sha256": sha256(weights)}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train DigitsNet on sklearn's digits and write its model folder.")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="model folder (name it 'digits')")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = parser.parse_args(argv)
    config = TrainConfig(seed=args.seed, epochs=args.epochs)
    torch.set_num_threads(config.threads)

    images, labels = load_images()
    train_idx, heldout = heldout_split(labels)
    mean, std = pixel_stats(images[train_idx])
    start = time.perf_counter()

    def report(step: int, total: int, rec: dict[str, float]) -> None:
        if step % 23 == 0 or step == total:
            print(f"step {step}/{total} epoch {int(rec['epoch'])} loss {rec['loss']:.4f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)

    model, history = train(images[train_idx], labels[train_idx], mean, std, config, report)
    seconds = time.perf_counter() - start
    held = torch.from_numpy(heldout)
    accuracy, per_class = accuracies(predict(model, images[held], mean, std), labels[held])
    card = write_folder(args.out, model, mean, std, heldout, {
        "format": "convlens-model-card/1",
        "heldout_accuracy": accuracy,
        "heldout_per_class": per_class,
        "n_train": len(train_idx),
        "n_heldout": len(heldout),
        "train_seconds": round(seconds, 1),
        "epochs": config.epochs,
        "seed": config.seed,
        "train_config": asdict(config),
        "final_loss": history[-1]["loss"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "mean": mean,
        "std": std,
        "torch": torch.__version__,
    })
    print(f"trained in {seconds:.0f}s; held-out accuracy {accuracy:.4f} (n={len(heldout)}); "
          f"wrote {args.out} (weights sha256 {str(card['weights_sha256'])[:12]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
