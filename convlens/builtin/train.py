"""Training, evaluation, checkpoint I/O and sample export for the builtin model.

Run ``python -m convlens.builtin.train`` to retrain the committed checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .dataset import CLASSES, HELDOUT_SEED, IMAGE_SIZE, TRAIN_SEED, render_batch, render_drawn_batch, render_sample
from .net import MEAN, STD, BuiltinNet, normalize

CHECKPOINT_PATH = Path(__file__).with_name("builtin.pt")
_INPUT_STD = torch.tensor(STD).view(1, 3, 1, 1)  # pixel units → normalised input units (float32)

Callback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults produce the committed checkpoint."""

    seed: int = TRAIN_SEED  # dataset stream and torch.manual_seed
    n_train: int = 8_000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3  # OneCycle peak learning rate
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    background_fraction: float = 0.15  # extra object-free scenes, trained towards the uniform distribution
    activation_penalty: float = 0.2  # L1 on the last conv stage's activations: units fire where there is evidence
    input_noise: float = 0.25  # std of Gaussian noise added to training inputs, in [0, 1] pixel units
    drawn_fraction: float = 0.25  # extra flat "drawn" scenes rendered large and resized (see render_drawn_batch)
    noise_fraction: float = 1.0  # share of each batch that gets the input noise (the rest stays clean)
    focus_penalty: float = 0.0  # weight of the input gradient's energy share outside the object (Ross et al. 2017)
    focus_samples: int = 16  # labelled samples per batch the focus penalty is computed on (a double backward)
    size: int = IMAGE_SIZE
    threads: int = 2


def _augment(images: torch.Tensor, gen: torch.Generator, masks: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random horizontal/vertical flips per sample of (N,3,H,W) images and, flipped alike, (N,H,W) masks.

    Label-preserving for all classes."""
    n = images.shape[0]
    flip_x = torch.rand(n, generator=gen) < 0.5
    flip_y = torch.rand(n, generator=gen) < 0.5

    def flip(t: torch.Tensor) -> torch.Tensor:
        shape = (n,) + (1,) * (t.dim() - 1)
        t = torch.where(flip_x.view(shape), t.flip(-1), t)
        return torch.where(flip_y.view(shape), t.flip(-2), t)

    return flip(images), None if masks is None else flip(masks)


def _to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) uint8 → normalised float32 model input."""
    return normalize(images_uint8.float().div_(255.0))


def _add_noise(x: torch.Tensor, std: float, gen: torch.Generator, fraction: float = 1.0) -> torch.Tensor:
    """Normalised (N,3,H,W) input plus Gaussian noise of ``std`` in [0, 1] pixel units on the first
    ``round(fraction · N)`` samples (the batch order is random; the rest stays clean).

    Training with input noise is, to first order, a penalty on the squared input gradient
    (Bishop 1995): the model keeps its sensitivity where the evidence is, which makes vanilla
    saliency maps point at the object (see MODEL_CARD.md).
    """
    if std <= 0:
        return x
    scale = std / _INPUT_STD.to(x.dtype)
    if fraction >= 1.0:
        return x + torch.randn(x.shape, generator=gen, dtype=x.dtype) * scale
    k = round(fraction * x.shape[0])
    noise = torch.randn((k, *x.shape[1:]), generator=gen, dtype=x.dtype) * scale
    return torch.cat([x[:k] + noise, x[k:]])


def focus_penalty(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean share of the input gradient's energy outside the object, differentiable in the weights.

    ``x`` (N,3,H,W) normalised inputs, ``labels`` (N,), ``masks`` (N,H,W) bool object masks → scalar in [0, 1]:
    Σ_outside ‖∂S_y/∂x‖² / Σ ‖∂S_y/∂x‖² with S_y the true class's logit, the quantity vanilla saliency
    (Simonyan et al. 2014) draws. A "right for the right reasons" penalty (Ross, Hughes & Doshi-Velez 2017) on
    the gradient's *shape*, not its size, so it does not buy robustness the way input noise does.
    """
    x = x.detach().requires_grad_(True)
    scores = model(x).gather(1, labels[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, x, create_graph=True)
    energy = grad.pow(2).sum(1)  # (N,H,W)
    outside = (energy * (~masks)).flatten(1).sum(1)
    return (outside / energy.flatten(1).sum(1).clamp_min(1e-12)).mean()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 64) -> None:
    """Re-estimate every BatchNorm's running mean/variance on clean (N,3,H,W) uint8 images.

    Noisy training leaves statistics of noisy inputs, which shift clean predictions; each
    layer's statistics become the average over equal-sized batches of ``images_uint8``
    (momentum ``None``; a last partial batch is dropped unless it is the only one). Weights are
    untouched; the model is left in eval mode.
    """
    if len(images_uint8) == 0:
        raise ValueError("recalibrate_batchnorm needs at least one image")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        for s in range(0, max(len(images_uint8) - batch_size, 0) + 1, batch_size):
            model(_to_input(images_uint8[s : s + batch_size]))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def _training_set(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N,3,H,W) uint8, soft targets (N,K): the labelled scenes, the drawn ones, then object-free
    ones; and the object masks (n_train,H,W) bool of the labelled scenes (the first ``n_train`` images).

    Targets are label-smoothed one-hots; object-free scenes (rendered from indices the
    labelled ones never use) get the uniform distribution, so the model can't learn a class
    from the background, the clutter or the image border, and its attribution maps
    have to point at the object (see MODEL_CARD.md for the effect on the pointing game).
    """
    k = len(CLASSES)
    images_np, masks_np, labels_np = render_batch(config.seed, config.n_train, config.size)
    n_background = round(config.background_fraction * config.n_train)
    empty_np, _, _ = render_batch(config.seed, n_background, config.size, start=config.n_train, with_object=False)
    n_drawn = round(config.drawn_fraction * config.n_train)
    drawn_np, drawn_labels = render_drawn_batch(config.seed, n_drawn, start=config.n_train + n_background,
                                                size=config.size)
    images = torch.from_numpy(np.concatenate([images_np, drawn_np, empty_np])).permute(0, 3, 1, 2).contiguous()
    eps = config.label_smoothing
    labelled = F.one_hot(torch.from_numpy(np.concatenate([labels_np, drawn_labels])), k).float() * (1.0 - eps) + eps / k
    targets = torch.cat([labelled, torch.full((n_background, k), 1.0 / k)])
    return images, targets, torch.from_numpy(masks_np)


def train(
    config: TrainConfig = TrainConfig(), callback: Callback | None = None
) -> tuple[BuiltinNet, list[dict[str, float]]]:
    """Train a BuiltinNet from scratch; returns the eval-mode model and per-step history.

    ``callback(step, total_steps, {"loss", "epoch", "lr"})`` is called after every step.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    images, targets, masks = _training_set(config)
    n_total = len(images)

    model = BuiltinNet(num_classes=len(CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(n_total / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict[str, float]] = []
    model.train()
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(n_total, generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            clean, _ = _augment(images[idx], gen)
            x = _add_noise(_to_input(clean), config.input_noise, gen, config.noise_fraction)
            logits, features = model.forward_with_features(x)
            loss = loss_fn(logits, targets[idx]) + config.activation_penalty * features.mean()
            if config.focus_penalty > 0:
                loss = loss + config.focus_penalty * _focus_on_batch(model, images, targets, masks, idx, gen, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            record = {"loss": float(loss.item()), "epoch": float(epoch), "lr": float(scheduler.get_last_lr()[0])}
            history.append(record)
            if callback is not None:
                callback(step, total, record)
    if config.input_noise > 0:
        recalibrate_batchnorm(model, images, config.batch_size)
    return model.eval(), history


def _focus_on_batch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
                    idx: torch.Tensor, gen: torch.Generator, config: TrainConfig) -> torch.Tensor:
    """:func:`focus_penalty` on the batch's first ``focus_samples`` labelled scenes (clean, flipped)."""
    chosen = idx[idx < len(masks)][: config.focus_samples]
    if len(chosen) == 0:
        return torch.zeros(())
    clean, flipped = _augment(images[chosen], gen, masks[chosen])
    assert flipped is not None
    return focus_penalty(model, _to_input(clean), targets[chosen].argmax(1), flipped)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """(N,H,W,3) uint8 images → (N,) int64 predicted labels (model left in its original mode)."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size]).permute(0, 3, 1, 2)
        out.append(model(_to_input(x)).argmax(1))
    model.train(was_training)
    return torch.cat(out).numpy()


def evaluate(model: nn.Module, seed: int = HELDOUT_SEED, n: int = 2000, size: int = IMAGE_SIZE) -> float:
    """Accuracy of ``model`` on ``n`` freshly rendered images of stream ``seed``."""
    images, _, labels = render_batch(seed, n, size)
    return float((predict(model, images) == labels).mean())


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write a plain-dict checkpoint loadable with ``torch.load(..., weights_only=True)``.

    ``metadata`` must hold ``heldout_accuracy`` (float) and ``train_config`` (dict or
    TrainConfig); ``classes``, ``image_size``, ``mean`` and ``std`` default to this package's.
    Extra keys must be plain Python values.
    """
    missing = {"heldout_accuracy", "train_config"} - metadata.keys()
    if missing:
        raise ValueError(f"checkpoint metadata is missing {sorted(missing)}")
    meta = dict(metadata)
    config = meta["train_config"]
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        meta["train_config"] = dataclasses.asdict(config)
    ckpt: dict[str, Any] = {
        "classes": list(CLASSES),
        "image_size": IMAGE_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        **meta,
        "heldout_accuracy": float(meta["heldout_accuracy"]),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def load_checkpoint(path: str | Path = CHECKPOINT_PATH) -> tuple[BuiltinNet, dict[str, Any]]:
    """Load a checkpoint → (eval-mode BuiltinNet, metadata dict without the state_dict)."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    model = BuiltinNet(num_classes=len(meta["classes"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), meta


def write_samples(out_dir: Path, n: int, seed: int = HELDOUT_SEED, size: int = IMAGE_SIZE) -> list[Path]:
    """Write ``NNNN_<class>.png`` and ``NNNN_<class>_mask.png`` for samples 0..n-1; returns the paths."""
    from PIL import Image  # lazy: keep package import light

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i in range(n):
        s = render_sample(seed, i, size)
        stem = f"{i:04d}_{CLASSES[s.label]}"
        image_path, mask_path = out_dir / f"{stem}.png", out_dir / f"{stem}_mask.png"
        Image.fromarray(s.image).save(image_path)
        Image.fromarray(s.mask.astype(np.uint8) * 255).save(mask_path)
        paths += [image_path, mask_path]
    return paths


def _main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Train the builtin ConvLens model (train → evaluate → save).")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_PATH, help="checkpoint path")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--n-train", type=int, default=TrainConfig.n_train)
    args = parser.parse_args()
    config = dataclasses.replace(TrainConfig(), epochs=args.epochs, n_train=args.n_train)

    start = time.perf_counter()

    def report(step: int, total: int, rec: dict[str, float]) -> None:
        if step % 50 == 0 or step == total:
            elapsed = time.perf_counter() - start
            print(f"step {step}/{total} epoch {int(rec['epoch'])} loss {rec['loss']:.4f} ({elapsed:.0f}s)", flush=True)

    model, _ = train(config, report)
    train_seconds = time.perf_counter() - start
    acc = evaluate(model, HELDOUT_SEED, 2000, config.size)
    print(f"trained in {train_seconds:.0f}s; held-out accuracy (seed {HELDOUT_SEED}, n=2000): {acc:.4f}")
    meta = {"heldout_accuracy": acc, "train_config": config, "train_seconds": round(train_seconds, 1)}
    save_checkpoint(model, args.out, meta)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    _main()
