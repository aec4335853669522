"""Training a conditional style network with the perceptual losses of Johnson et al. 2016, one network for
all styles (Dumoulin et al. 2017): each image of a batch is given a random style s and the network,
conditioned on s, minimises  α·‖φ_c(f(x, s)) − φ_c(x)‖²/‖φ_c(x)‖² + β·Σ_l ‖G_l(f(x, s)) − G_l(style_s)‖²/‖G_l(style_s)‖²
+ γ·TV(f(x, s))  — the same normalised terms as Gatys style transfer (``techniques/synthesis/objectives.py``) on the
same perceptual network (``techniques/synthesis/perceptual.py``; offline that is ``random_vgg``: fixed random weights).

Balancing (``balance``): the styles' losses differ by orders of magnitude even after normalising by the target
Gram's norm (a low-contrast grey texture's Gram is ~100× smaller than a photo's, so every other image is ~100×
away from it), and a plain mean lets the largest style own the shared weights. Each image's whole loss
(content + style + TV, so the per-style content/style trade-off stays Gatys's) is divided by a running mean of
its style's loss (no gradient): the network then follows ∇ Σ_s log L_s, an equal *relative* improvement for
every style — the quality goal is itself a per-style ratio (fast / Gatys).

Hard styles (``hard`` > 0) are drawn more often, with probability ∝ (running mean loss)^hard: balancing
equalises each image's weight, this gives the slowest styles more images. ``hard_by="loss"`` ranks styles by
their whole loss, which the content term dominates once the style terms have fallen (the ranks flatten);
``hard_by="style"`` ranks them by the style term alone, the part the quality goal measures.

Scale: the Gram matrix is a spatial mean, so ``size``-px crops matched to the style image at ``style_size``
learn the texture at the pixel scale of results stylised at ``style_size`` (the dashboard's 256 px) for a
quarter of the cost of 256-px crops.

Growing (``Trainer.load(path, grown=True)``, ``convlens style train --grow-from``): a trained network's weights
go into a larger one (more residual blocks, a per-style colour head; ``net.grow``) that starts out computing
the same images; the steps, history and stages go on, Adam restarts, and the card names the stage that grew.

Averaging (``ema`` > 0): the checkpoint also keeps an exponential moving average of the weights (Polyak
averaging), updated after every step; single-image evaluations of the raw weights swing between checkpoints
tens of steps apart, and ``export(..., ema=True)`` ships the average instead.

Content data is offline: the photos shipped in scikit-image and scikit-learn (``corpus.datasets``'s
``natural_sources``) and the built-in generator's
scenes (plus any folder of images), seen as random crops (scale 0.5–1 of the shorter side) and flips.
Everything random comes from one seeded ``torch.Generator`` saved in the checkpoint, so a resumed run
continues exactly as the uninterrupted one would.

Checkpoint: a plain dict (``torch.load(path, weights_only=True)``): ``state_dict``, ``styles`` (names),
``net`` (config), ``train`` (config), ``step``, ``history``, ``optimizer``, ``generator``, ``seconds``,
``running`` (the per-style running mean losses used for balancing), ``stages`` (the configs of the runs it
resumed, with the step each ended at).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convlens.hooks import capture
from convlens.techniques.stylize.net import NetConfig, StyleNet, grow
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.common import fit
from convlens.techniques.synthesis.perceptual import Perceptual, network

Callback = Callable[[int, int, dict[str, float]], None]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class TrainConfig:
    """Defaults: 128-px crops, 256-px style scale, batch 4, balanced; the built-in network's stages (learning
    rate decay, ``hard`` 2) are listed in its card."""

    steps: int = 1200
    batch: int = 4
    size: int = 128
    style_size: int = 256
    lr: float = 2e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.05
    network: str = "random_vgg"
    scenes: int = 64  # built-in generator scenes added to the content pool
    seed: int = 0
    checkpoint_every: int = 100
    balance: bool = True  # divide each image's loss by its style's running mean loss (module docstring)
    hard: float = 0.0  # draw style s with probability ∝ running_s ** hard (0: uniform; 2: harder styles more)
    hard_by: Literal["loss", "style"] = "loss"  # what ``running_s`` ranks for ``hard``: whole loss or style term
    ema: float = 0.0  # decay of the weights' moving average kept beside them (0: none; module docstring)
    style_boost: dict[str, float] = field(default_factory=dict)  # style name → factor on its style weight
    net: NetConfig = field(default_factory=NetConfig)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "net": self.net.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**{**data, "net": NetConfig.from_dict(data["net"])})


# ------------------------------------------------------------------------------------ content data


def rgb_tensor(array: np.ndarray) -> Tensor:
    """(H, W[, C]) uint8/float → (3, H, W) float in [0, 1]."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).astype(np.uint8) if a.max() <= 1 else a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return torch.from_numpy(np.array(a[..., :3])).permute(2, 0, 1).float() / 255


def load_image(path: str | Path) -> Tensor:
    from PIL import Image

    with Image.open(path) as img:
        return rgb_tensor(np.asarray(img.convert("RGB")))


def content_pool(folder: str | Path | None = None, scenes: int = 64, size: int = 128,
                 exclude: Sequence[str] = ()) -> tuple[list[Tensor], list[str]]:
    """Content images (3, H, W) and a description of where they came from: the photos shipped in installed
    wheels (``corpus.datasets.natural_sources``) minus ``exclude``, the built-in generator's scenes, a folder."""
    from convlens.builtin.dataset import render_sample
    from convlens.corpus.datasets import natural_sources

    photos = [(name, arr) for name, arr in natural_sources() if name not in exclude]
    pool = [rgb_tensor(arr) for _, arr in photos]
    sources = ["photos shipped in scikit-learn/scikit-image: " + ", ".join(name for name, _ in photos)]
    pool.extend(rgb_tensor(render_sample(7, k, size=size).image) for k in range(scenes))
    if scenes:
        sources.append(f"{scenes} built-in generator scenes (seed 7, {size} px)")
    if folder is not None:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        pool.extend(load_image(p) for p in files)
        sources.append(f"{len(files)} images from {folder}")
    return pool, sources


def sample_batch(pool: Sequence[Tensor], n: int, size: int, generator: torch.Generator) -> Tensor:
    """(n, 3, size, size): random images of ``pool``, random square crops (0.5–1 of the shorter side),
    resized, flipped left-right with probability ½."""
    out = []
    for _ in range(n):
        img = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        h, w = img.shape[-2:]
        short = min(h, w)
        side = max(16, int(short * (0.5 + 0.5 * float(torch.rand(1, generator=generator)))))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = F.interpolate(img[None, :, top:top + side, left:left + side], size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True)
        if float(torch.rand(1, generator=generator)) < 0.5:
            crop = crop.flip(-1)
        out.append(crop)
    return torch.cat(out).clamp(0, 1)


# ------------------------------------------------------------------------------------ losses


def upto(net: nn.Module, layers: Sequence[str]) -> nn.Module:
    """``net`` cut after the deepest of ``layers`` when it is an ``nn.Sequential`` holding them as named children
    (the random VGG, VGG-19's features): the layers past it change no loss, so they need not run."""
    names = [name for name, _ in net.named_children()]
    if not isinstance(net, nn.Sequential) or not set(layers) <= set(names):
        return net
    return net[:max(names.index(layer) for layer in layers) + 1]


def style_targets(net: Perceptual, styles: Sequence[Tensor], size: int) -> dict[str, Tensor]:
    """Gram matrices (S, C, C) of each style image (longer side ``size``) at the style layers."""
    per_style = []
    features = upto(net.net, net.style_layers)
    for style in styles:
        with torch.no_grad(), capture(features, net.style_layers, detach=True) as captured:
            features(net.to_input(fit(style, size).to(net.device)))
        per_style.append({layer: obj.gram(captured[layer]) for layer in net.style_layers})
    return {layer: torch.cat([g[layer] for g in per_style]) for layer in net.style_layers}


def perceptual_losses(net: Perceptual, output: Tensor, content: Tensor, targets: dict[str, Tensor],
                      blend: Tensor) -> dict[str, Tensor]:
    """Per image (N,): ``content`` and ``style`` losses (normalised as in ``objectives``) and ``tv``.
    The Gram target of image k is Σ_s blend[k, s] · G(style_s). The perceptual network runs only as deep as
    the layers need (``upto``)."""
    to_content = upto(net.net, [net.content_layer])
    with torch.no_grad(), capture(to_content, [net.content_layer], detach=True) as captured:
        to_content(net.to_input(content))
    content_features = captured[net.content_layer]
    mixed = {layer: torch.einsum("ns,scd->ncd", blend, g) for layer, g in targets.items()}
    layers = (*net.style_layers, net.content_layer)
    features = upto(net.net, layers)
    with capture(features, layers) as acts:
        features(net.to_input(output))
    ctx = obj.Context(output, acts.activations, None)
    content_loss, _ = obj.feature_distance(net.content_layer, content_features)(ctx)
    style_loss, _ = obj.gram_distance(mixed)(ctx)
    tv, _ = obj.total_variation()(ctx)
    return {"content": content_loss, "style": style_loss, "tv": tv}


# ------------------------------------------------------------------------------------ training


class Trainer:
    """Holds the network, optimiser, generator and history of one training run; ``step()`` is one update."""

    def __init__(self, styles: Sequence[Tensor], names: Sequence[str], pool: Sequence[Tensor],
                 config: TrainConfig = TrainConfig(), device: torch.device | str = "cpu",
                 content_sources: Sequence[str] = ()) -> None:
        if len(styles) != len(names) or not styles:
            raise ValueError("one name per style image, at least one style")
        self.config, self.names, self.pool = config, list(names), list(pool)
        unknown = sorted(set(config.style_boost) - set(self.names))
        if unknown:
            raise ValueError(f"style_boost names {unknown} are not among the styles {self.names}")
        self.content_sources = list(content_sources)
        self.device = torch.device(device)
        self.style_factor = torch.tensor([float(config.style_boost.get(n, 1.0)) for n in self.names],
                                         device=self.device)
        torch.manual_seed(config.seed)
        self.model = StyleNet(len(styles), config.net).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.perceptual = network(config.network, self.device)
        self.targets = style_targets(self.perceptual, styles, config.style_size)
        self.step_count = 0
        self.seconds = 0.0
        self.running = torch.zeros(len(self.names))  # per-style running mean loss; 0 = not seen yet
        self.running_style = torch.zeros(len(self.names))  # the same for the style term alone
        self.stages: list[dict[str, Any]] = []  # earlier runs this one resumed: their config and last step
        self.ema: dict[str, Tensor] | None = self._fresh_ema()
        # the per-style ``style/<name>``: that style's loss on the images it was drawn for
        keys = ("loss", "content", "style", "tv", *(f"style/{name}" for name in self.names))
        self.history: dict[str, list[float]] = {k: [] for k in keys}

    def step(self) -> dict[str, float]:
        c = self.config
        x = sample_batch(self.pool, c.batch, c.size, self.generator).to(self.device)
        which = self._styles(c.batch)
        blend = F.one_hot(which, len(self.names)).float().to(self.device)
        start = time.perf_counter()
        self.model.train()
        out = self.model(x, blend)
        parts = perceptual_losses(self.perceptual, out, x, self.targets, blend)
        style_weight = c.style_weight * self.style_factor[which.to(self.device)]
        per_image = c.content_weight * parts["content"] + style_weight * parts["style"] + c.tv_weight * parts["tv"]
        loss = per_image.mean()
        objective = (per_image / self._balance(which, per_image.detach().cpu()).to(self.device)).mean() \
            if c.balance else loss
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        self._update_ema()
        self.seconds += time.perf_counter() - start
        self.step_count += 1
        row = {"loss": float(loss.detach()), **{k: float(v.detach().mean()) for k, v in parts.items()}}
        for k, v in row.items():
            self.history[k].append(v)
        style_means = _per_style_means(which, parts["style"].detach().cpu())
        for s, value in style_means.items():
            self.history[f"style/{self.names[s]}"].append(value)
        _update_running(self.running_style, style_means)
        return row

    def _fresh_ema(self) -> dict[str, Tensor] | None:
        """A moving average starting at the current weights, or None when ``ema`` is off."""
        if self.config.ema <= 0:
            return None
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _update_ema(self) -> None:
        """average ← ema · average + (1 − ema) · weights, for every entry of the state dict."""
        if self.ema is None:
            return
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                self.ema[k].mul_(self.config.ema).add_(v.detach(), alpha=1 - self.config.ema)

    def _styles(self, n: int) -> Tensor:
        """(n,) style indices: uniform, or ∝ running_s ** ``hard`` once every style has been seen."""
        running = self.running_style if self.config.hard_by == "style" else self.running
        if self.config.hard == 0 or bool((running == 0).any()):
            return torch.randint(len(self.names), (n,), generator=self.generator)
        return torch.multinomial(running ** self.config.hard, n, replacement=True, generator=self.generator)

    def _balance(self, which: Tensor, per_image: Tensor, decay: float = 0.98) -> Tensor:
        """(N,) divisors: the running mean loss of each image's style, updated with this batch first."""
        _update_running(self.running, _per_style_means(which, per_image), decay)
        return self.running[which]

    def train(self, steps: int | None = None, callback: Callback | None = None,
              checkpoint: str | Path | None = None, styles_meta: Sequence[dict[str, Any]] = ()) -> None:
        """Run up to ``steps`` in total (default: the config's), saving every ``checkpoint_every`` steps."""
        total = steps if steps is not None else self.config.steps
        while self.step_count < total:
            row = self.step()
            if callback is not None:
                callback(self.step_count, total, row)
            if checkpoint is not None and (self.step_count % self.config.checkpoint_every == 0
                                           or self.step_count == total):
                self.save(checkpoint, styles_meta)

    def state(self, styles_meta: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        return {
            "format": "convlens-stylize/1",
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "styles": list(self.names), "styles_meta": [dict(m) for m in styles_meta],
            "net": self.config.net.to_dict(), "train": self.config.to_dict(),
            "perceptual": self.perceptual.description, "content": list(self.content_sources),
            "step": self.step_count, "seconds": self.seconds, "history": {k: list(v) for k, v in self.history.items()},
            "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
            "running": self.running.clone(), "running_style": self.running_style.clone(), "stages": self._stages(),
        } | ({"ema_state_dict": {k: v.clone() for k, v in self.ema.items()}} if self.ema is not None else {})

    def _stages(self) -> list[dict[str, Any]]:
        """The resumed runs and this one, each ``{"until_step", "train"}``."""
        return merge_stages([*self.stages, {"until_step": self.step_count, "train": self.config.to_dict()}])

    def save(self, path: str | Path, styles_meta: Sequence[dict[str, Any]] = ()) -> None:
        """The checkpoint (atomically) and its model card (``.card.json`` and ``.card.md``) beside it."""
        save_state(Path(path), self.state(styles_meta))

    def load(self, path: str | Path, grown: bool = False) -> None:
        """Resume from a checkpoint written by :meth:`save` with the same styles. ``grown``: the checkpoint's
        network may be smaller (``net.grow``: fewer residual blocks, no colour head); its weights are grown into
        this one (same function), Adam restarts, and the steps, history and stages go on."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if list(state["styles"]) != self.names:
            raise ValueError(f"checkpoint styles {state['styles']} differ from {self.names}")
        saved = NetConfig.from_dict(state["net"])
        if grown:
            grow(self.model, state["state_dict"], saved)
        elif saved != self.config.net:
            raise ValueError(f"checkpoint network {state['net']} differs from {self.config.net.to_dict()}")
        else:
            self.model.load_state_dict(state["state_dict"])
        if "optimizer" in state and not grown:  # an exported network (``export``) restarts Adam's moments
            self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # this run's learning rate, not the saved one
            group["lr"] = self.config.lr
        self.generator.set_state(state["generator"])
        self.step_count, self.seconds = int(state["step"]), float(state["seconds"])
        if "running" in state:  # older checkpoints start balancing afresh
            self.running = state["running"].clone()
        if "running_style" in state:
            self.running_style = state["running_style"].clone()
        # the saved average goes on; a run that starts averaging (or a grown network) starts it at the weights
        self.ema = self._fresh_ema()
        if self.ema is not None and "ema_state_dict" in state and not grown:
            self.ema = {k: v.clone() for k, v in state["ema_state_dict"].items()}
        self.stages = [dict(s) for s in state.get("stages", [{"until_step": self.step_count, "train": state["train"]}])]
        self.history = {k: [] for k in self.history} | {k: list(v) for k, v in state["history"].items()}


def _per_style_means(which: Tensor, per_image: Tensor) -> dict[int, float]:
    """{style s: mean of ``per_image`` (N,) over the images drawn for s}, for the styles in ``which`` (N,)."""
    return {s: float(per_image[which == s].mean()) for s in which.unique().tolist()}


def _update_running(running: Tensor, means: Mapping[int, float], decay: float = 0.98) -> None:
    """``running[s]`` ← the exponential running mean of style s's batch means (the batch mean on first sight)."""
    for s, value in means.items():
        old = float(running[s])
        running[s] = value if old == 0 else decay * old + (1 - decay) * value


def save_state(path: Path, state: dict[str, Any]) -> None:
    """``state`` to ``path`` (atomically) and its model card beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    write_card(path, state)


def export(source: str | Path, out: str | Path, ema: bool = False) -> dict[str, Any]:
    """A copy of checkpoint ``source`` without the optimiser state (Adam's two moments: two thirds of the file),
    for shipping: it loads and stylises identically; resuming from it restarts the moments. ``ema``: ship the
    weights' moving average (``TrainConfig.ema``) as the weights instead (recorded as ``weights``). Card
    rewritten."""
    state = torch.load(Path(source), map_location="cpu", weights_only=True)
    state.pop("optimizer", None)
    average = state.pop("ema_state_dict", None)
    if ema:
        if average is None:
            raise ValueError(f"{source} keeps no moving average of its weights (train with ema > 0)")
        state["state_dict"] = average
        state["weights"] = f"moving average of the training weights (decay {state['train']['ema']})"
    save_state(Path(out), state)
    return state


def merge_stages(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive stages whose configs differ only in the step budget (``steps``) as one (a field an older
    config lacks counts as its default)."""
    def key(stage: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in TrainConfig.from_dict(dict(stage["train"])).to_dict().items() if k != "steps"}

    merged: list[dict[str, Any]] = []
    for stage in stages:
        if merged and key(merged[-1]) == key(stage):
            merged.pop()
        merged.append(dict(stage))
    return merged


def _window_mean(values: Sequence[float], first: bool, n: int = 50) -> float | None:
    if not values:
        return None
    part = values[:n] if first else values[-n:]
    return round(float(np.mean(part)), 5)


def card(state: dict[str, Any], evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model card: styles, content data, steps and training stages, losses (first/last 50-step means, per
    style too), time, network, and — when given — the benchmark's ``evaluation``."""
    history = state["history"]
    stages = merge_stages(state.get("stages") or [{"until_step": state["step"], "train": state["train"]}])
    info = {
        "format": state["format"], "styles": state["styles"], "styles_meta": state["styles_meta"],
        "content_data": state["content"], "steps": state["step"], "train_seconds": round(state["seconds"], 1),
        "train_config": state["train"], "stages": stages, "network": state["net"],
        "parameters": int(sum(v.numel() for v in state["state_dict"].values())),
        "optimizer_state": "optimizer" in state,
        "weights": state.get("weights", "the training weights at the last step"),
        "perceptual_network": state["perceptual"],
        "losses": {k: {"first_50": _window_mean(v, True), "last_50": _window_mean(v, False)}
                   for k, v in history.items()},
        "references": ["Johnson, Alahi & Fei-Fei 2016", "Ulyanov, Vedaldi & Lempitsky 2016",
                       "Dumoulin, Shlens & Kudlur 2017"],
    }
    return info | ({"evaluation": dict(evaluation)} if evaluation is not None else {})


def _net_line(net: Mapping[str, Any]) -> str:
    return (f"widths {list(net['widths'])}, {net['blocks']} residual blocks"
            + (", per-style colour head" if net.get("color") else ""))


def _stage_line(start: int, stage: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> str:
    """One training stage; a network grown from the previous stage's (``Trainer.load(grown=True)``) is named."""
    t = stage["train"]
    grown = previous is not None and dict(previous["train"]["net"]) != dict(t["net"])
    return (f"steps {start}–{stage['until_step']}: "
            + (f"network grown to {_net_line(t['net'])} (new parts start as identities), " if grown else "")
            + f"{t['size']}-px crops, style image at {t.get('style_size')} px, "
            f"batch {t['batch']}, Adam lr {t['lr']}, weights content {t['content_weight']} / style "
            f"{t['style_weight']}"
            + "".join(f" (×{f:g} for {n})" for n, f in (t.get("style_boost") or {}).items())
            + f" / TV {t['tv_weight']}, {'balanced' if t.get('balance') else 'unbalanced'} "
            f"styles" + (f", styles drawn ∝ running {'style ' if t.get('hard_by') == 'style' else ''}loss^{t['hard']:g}"
                         if t.get("hard") else "")
            + (f", weights averaged (decay {t['ema']:g})" if t.get("ema") else "") + f", seed {t['seed']}")


def _evaluation_lines(evaluation: Mapping[str, Any]) -> list[str]:
    rows = evaluation["styles"]
    return ["", f"## Measured ({evaluation['how']})", "",
            "| style | style loss, fast | style loss, Gatys | fast / Gatys | content loss, fast "
            "| content loss, Gatys |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *(f"| {name} | {r['fast_style']:.4f} | {r['gatys_style']:.4f} | {r['fast_style'] / r['gatys_style']:.2f}× "
              f"| {r['fast_content']:.3f} | {r['gatys_content']:.3f} |" for name, r in rows.items())]


def _limitations(info: Mapping[str, Any]) -> str:
    """What the losses say about the content/style trade-off, from the card's own numbers."""
    t, losses = info["train_config"], info["losses"]
    content, style = losses.get("content", {}), losses.get("style", {})
    return ("- **Limitations**: a short training against random features, where the style term outweighs the "
            f"content term (weights {t['content_weight']} / {t['style_weight']}): the content loss went "
            f"{content.get('first_50')} → {content.get('last_50')} while the style loss went {style.get('first_50')} "
            f"→ {style.get('last_50')}, so at `strength` 1 the content's layout survives only partly. A style's Gram "
            "statistics carry its mean colour, so a dark style image (a deep-field photograph) gives a dark result "
            "whatever the content. Mix the content back with `strength` < 1, or retrain with a higher "
            "`--content-weight` (lower `--style-weight`). Results are meant at about 256 px (the style scale "
            "trained for); the texture's pixel scale stays fixed at other sizes.")


def write_card(path: Path, state: dict[str, Any], evaluation: Mapping[str, Any] | None = None) -> None:
    """``<checkpoint>.card.json`` and ``.card.md``; ``evaluation``: ``{"how": str, "styles": {name: {fast_style,
    gatys_style, fast_content, gatys_content}}}`` from ``bench/style.py`` (a retraining drops it)."""
    info = card(state, evaluation)
    path.with_suffix(".card.json").write_text(json.dumps(info, indent=2) + "\n")
    starts = [0, *(s["until_step"] for s in info["stages"][:-1])]
    lines = [f"# Fast style network `{path.name}`", "",
             "Feed-forward transformation network (Johnson et al. 2016) with conditional instance normalisation "
             "(Dumoulin et al. 2017): one network, one set of IN scales/shifts per style; blends mix them.", "",
             f"- **Styles** ({len(info['styles'])}): " + ", ".join(
                 f"`{s}`" + (f" ({m.get('source', '')})" if m.get("source") else "")
                 for s, m in zip(info["styles"], info["styles_meta"] or [{}] * len(info["styles"]), strict=False)),
             f"- **Perceptual network**: {info['perceptual_network']}. No pretrained weights were used; losses are "
             "measured on random features, so the styles are texture statistics of a random VGG, not ImageNet VGG's.",
             "- **Content data**: " + "; ".join(info["content_data"]) + " — random crops (0.5–1 of the shorter side) "
             "and left-right flips.",
             f"- **Training**: {info['steps']} steps, {info['train_seconds']} s of training wall clock; "
             + "; ".join(_stage_line(a, s, p) for a, s, p in zip(starts, info["stages"], [None, *info["stages"]],
                                                                 strict=False)) + ". Balanced: "
             "each image's loss divided by its style's running mean loss (`train.py`).",
             f"- **Network**: {_net_line(info['network'])}, {info['parameters']} parameters ("
             + ("with the optimiser state in the checkpoint for resuming)." if info["optimizer_state"] else
                "exported without the optimiser state; resuming restarts Adam's moments)."),
             f"- **Weights**: {info['weights']}.",
             "- **Losses** (mean of the first / last 50 steps; `style/<name>`: that style's images): " + ", ".join(
                 f"{k} {v['first_50']} → {v['last_50']}" for k, v in info["losses"].items()),
             _limitations(info),
             *(_evaluation_lines(evaluation) if evaluation is not None else []),
             "", "Load with `torch.load(path, weights_only=True)`; retrain with `convlens style train`.", ""]
    path.with_suffix(".card.md").write_text("\n".join(lines))
