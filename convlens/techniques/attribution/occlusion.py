"""Occlusion sensitivity (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", §4.2).

Slide a window over the image, fill it, and record how much the target's probability drops.
Each pixel's value is the mean drop over the windows that cover it. The perturbed copies run in
batches sized to a memory budget, under ``torch.inference_mode()``, optionally in reduced
precision (bfloat16 on CPUs that support it, float16 on GPUs).
"""

from __future__ import annotations

import copy
import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convlens import images
from convlens.hooks import footprint
from convlens.outputs import Image, Scalar
from convlens.registry import bounded, technique
from convlens.results import Attribution, Progress
from convlens.schema import SchemaError
from convlens.techniques.attribution import guard, incremental, refinement
from convlens.techniques.attribution.common import Target, check_input, model_device, resolve_target, unit_scale

Fill = Literal["zero", "mean", "blur"]
DEFAULT_MEMORY_BUDGET_MB = 64  # per batch (ResNet-50: 8 whole copies, best for them on CPU; ~23 incremental ones)
MAX_BATCH = 256


@dataclass(frozen=True)
class OcclusionParams:
    """window/stride in input pixels. ``fill``: ``zero`` (0 in the model's input space, i.e. the
    normalisation mean colour), ``mean`` (the image's own mean colour), ``blur`` (the image blurred with
    σ = window / 4) or a grey level in [0, 1]. ``batch_size``: perturbed copies per forward pass
    (None: as many as ``memory_budget_mb`` holds). ``incremental`` (default): each filled window's batch
    recomputes the early layers only on the box the window changes (exact; see :mod:`.incremental`),
    falling back to whole copies for a model that does not trace.

    Cheaper modes, each kept only where the guard trusts its map (:mod:`.guard`: the 2 windows of the largest
    drops and a stratified random sample of 10 others are re-run exactly and join the map, and the sample's
    errors bound the map's correlation with the exact one, ``scalars["predicted_correlation"]``, a 95 % lower
    bound; under 0.99 the image is finished exactly, and the mode's scalar says 0):

    - ``dropped_energy`` (``approximate``): boxes capped per layer by measurement. The lattice's corner and
      centre windows run exactly first, and each layer's box is capped at the smallest size around the window
      that held all but this share of their change energy there.
    - ``approximation`` (``approximate``): Krypton's projective-field threshold τ, every box capped at τ × its
      map's side.
    - ``precision="reduced"`` (``reduced_precision``): each window's *change* to the clean activations is held
      and convolved in bfloat16 where the CPU runs it faster, float16 on a GPU (float32 otherwise), with the
      clean activations and the head in float32; a model that does not trace runs its copies under autocast.
    - ``refinement`` (``refined``, ``windows_run``): adaptive window refinement (:mod:`.refinement`): every
      second window is run, a cell of them whose probabilities differ by more than this fraction of the image's
      range is run in full, the rest interpolated, with its own guard over interpolated windows. Needs a stride
      of at most half the window, so that the windows always run still cover every pixel."""

    window: int = 8
    stride: int = 4
    fill: Fill | float = "mean"
    batch_size: int | None = None
    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB
    precision: Literal["float32", "reduced"] = "float32"
    incremental: bool = True
    approximation: float | None = bounded(None, 0.05, 1.0)
    refinement: float | None = bounded(None, 0.0, 1.0)
    dropped_energy: float | None = bounded(None, 1e-6, 0.1)


def positions(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one side; the last window always touches the far edge."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def reduced_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA, bfloat16 on a CPU with native support, else float32 (nothing to gain)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):
            pass
    return torch.float32


_FAST_REDUCED: dict[str, torch.dtype] = {}


def fast_reduced_dtype(device: torch.device) -> torch.dtype:
    """:func:`reduced_dtype` where it is measured to be faster, else float32: a CPU may report bfloat16
    support yet run its convolutions in an emulated path (oneDNN capped below AVX-512-BF16, e.g. by
    ``ONEDNN_MAX_CPU_ISA``), where ``precision=reduced`` would cost more than exact. Measured once per process
    on a 3×3 convolution the size of a ResNet stage (about 0.1 s)."""
    candidate = reduced_dtype(device)
    if device.type != "cpu" or candidate == torch.float32:
        return candidate
    if "cpu" not in _FAST_REDUCED:
        _FAST_REDUCED["cpu"] = candidate if _conv_seconds(candidate) < 0.8 * _conv_seconds(torch.float32) \
            else torch.float32
    return _FAST_REDUCED["cpu"]


def _conv_seconds(dtype: torch.dtype, reps: int = 3) -> float:
    import time

    x = torch.randn(8, 128, 28, 28, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    best = math.inf
    with torch.inference_mode():
        for _ in range(reps + 1):  # the first run creates the kernel
            start = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=1)
            best = min(best, time.perf_counter() - start)
    return best


def _check(params: OcclusionParams, height: int, width: int) -> None:
    if params.window < 1 or params.window > min(height, width):
        raise SchemaError("params.window", f"must be in [1, {min(height, width)}] (the input is "
                                           f"{height}x{width} px), got {params.window}")
    if params.stride < 1:
        raise SchemaError("params.stride", f"must be >= 1, got {params.stride}")
    if params.batch_size is not None and not 1 <= params.batch_size <= 4096:
        raise SchemaError("params.batch_size", f"must be in [1, 4096] or null, got {params.batch_size}")
    if not 1 <= params.memory_budget_mb <= 65536:
        raise SchemaError("params.memory_budget_mb", f"must be in [1, 65536], got {params.memory_budget_mb}")
    if params.approximation is not None and not 0.05 <= params.approximation <= 1.0:
        raise SchemaError("params.approximation", f"τ must be in [0.05, 1] or null, got {params.approximation}")
    if params.refinement is not None and not 0.0 <= params.refinement <= 1.0:
        raise SchemaError("params.refinement", f"must be in [0, 1] or null, got {params.refinement}")
    if params.dropped_energy is not None and not 1e-6 <= params.dropped_energy <= 0.1:
        raise SchemaError("params.dropped_energy", f"must be in [1e-6, 0.1] or null, got {params.dropped_energy}")
    if params.dropped_energy is not None and params.approximation is not None:
        raise SchemaError("params.dropped_energy", "caps boxes by measurement; τ (params.approximation) caps them "
                                                   "by rule: choose one")
    if params.refinement is not None and 2 * params.stride > params.window:
        raise SchemaError("params.refinement", f"needs a stride of at most half the window (window "
                                               f"{params.window}, stride {params.stride})")
    if not isinstance(params.fill, str) and not 0.0 <= params.fill <= 1.0:
        raise SchemaError("params.fill", f"a grey level must be in [0, 1], got {params.fill}")


def fill_image(x: Tensor, params: OcclusionParams, to_input: images.Normalizer | None) -> Tensor:
    """What a window is filled with, per image: (N, C, H, W) in the model's input space."""
    if params.fill == "zero":
        return torch.zeros_like(x)
    if params.fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    if params.fill == "blur":
        return images.gaussian_blur(x, params.window / 4)
    grey = torch.full_like(x, float(params.fill))
    return to_input(grey) if to_input is not None else grey


@technique(name="occlusion", title="Occlusion", family="attribution", params=OcclusionParams, order=40,
           reference="Zeiler & Fergus 2014", outputs=(
               Scalar("score", "the explained class's probability on the whole image"),
               Image("logit_drop", "signed drop of the class logit where a window covers (grey = 0)", kind="map"),
               Scalar("max_probability_drop", "largest drop of the class probability"),
               Scalar("max_logit_drop", "largest drop of the class logit"),
               Scalar("windows", "occluding windows over the image", integer=True),
               Scalar("windows_run", "windows run through the model (refinement interpolates the rest)", integer=True),
               Scalar("batch_size", "most occluded copies per forward pass", integer=True),
               Scalar("reduced_precision", "1 when the map was computed in reduced precision", integer=True),
               Scalar("approximate", "1 when the incremental approximation was kept", integer=True),
               Scalar("incremental", "1 when only the region a window changes was recomputed", integer=True),
               Scalar("refined", "1 when the adaptively refined map was kept", integer=True),
               Scalar("predicted_correlation", "the guard's 95 % lower bound on the cheaper map's correlation with "
                                               "the exact one (1: exact)")))
def occlusion(
    model: nn.Module, x: Tensor, target: Target = None, params: OcclusionParams = OcclusionParams(),
    progress: Progress | None = None, to_input: images.Normalizer | None = None,
) -> Attribution:
    """Map = mean drop of the target's softmax probability over the windows covering each pixel,
    clipped at 0 and scaled to [0, 1] per image; ``signed["logit_drop"]`` is the signed mean drop of
    the target's logit. ``to_input`` maps [0, 1] pixels to model input (for a grey ``fill``)."""
    check_input(x)
    n, _, height, width = x.shape
    _check(params, height, width)
    device = model_device(model)
    x = x.detach().to(device)
    tops, lefts = positions(height, params.window, params.stride), positions(width, params.window, params.stride)
    windows = [(t, left) for t in tops for left in lefts]
    dtype = fast_reduced_dtype(device) if params.precision == "reduced" else torch.float32
    with torch.inference_mode(), footprint(model) as size:
        # one image at a time, like its windows: an image's map must not depend on what else came in the
        # request (a batch of N runs other kernels than a batch of 1, and the map divides small differences
        # of probabilities by its peak, so their last bits would show)
        base_logits = torch.cat([model(x[i:i + 1]) for i in range(n)]).float()
    t = resolve_target(base_logits, target)
    batch = params.batch_size or _budget_batch(size.largest_per_sample, x.shape[1:].numel(),
                                               params.memory_budget_mb, dtype)
    run = _WindowRunner(model, x, params, fill_image(x, params, to_input), batch, dtype, progress,
                        n * len(windows))
    drops_p, drops_l = [], []
    # per image: flags and the bound are 1 only if every image kept its cheaper map; windows add up
    used = {"reduced_precision": 1.0, "approximate": 1.0, "windows_run": 0.0, "refined": 1.0,
            "predicted_correlation": 1.0}
    base_prob = torch.softmax(base_logits, 1).gather(1, t[:, None])[:, 0]
    for i in range(n):
        logits, info = _image_logits(run, i, windows, tops, lefts, int(t[i]), dtype)
        used = {k: used[k] + info[k] if k == "windows_run" else min(used[k], info[k]) for k in used}
        drops_p.append(base_prob[i] - torch.softmax(logits, 1)[:, t[i]])
        drops_l.append(base_logits[i, t[i]] - logits[:, t[i]])
    raw = _window_means(windows, torch.stack(drops_p), params.window, height, width)
    signed = _window_means(windows, torch.stack(drops_l), params.window, height, width)
    return Attribution(
        unit_scale(raw.clamp_min(0)), t, base_prob, base_logits, raw=raw, objective="class probability",
        signed={"logit_drop": signed},
        scalars={"windows": float(len(windows)), "batch_size": float(max(run.batches)),
                 "incremental": float(run.graph is not None), **used,
                 "max_probability_drop": raw.flatten(1).amax(1), "max_logit_drop": signed.flatten(1).amax(1)},
    )


def _image_logits(run: _WindowRunner, i: int, windows: list[tuple[int, int]], tops: list[int], lefts: list[int],
                  target: int, dtype: torch.dtype) -> tuple[Tensor, dict[str, float]]:
    """(windows, K) logits of image ``i`` — exact, or cheaper (capped boxes, reduced precision, refinement) and
    then guarded — and what was kept: ``reduced_precision``, ``approximate``, ``refined`` (1/0), ``windows_run``,
    ``predicted_correlation``."""
    params = run.params
    exact: dict[int, Tensor] = {}  # window index → its exact logits
    caps = incremental.Caps(tau=params.approximation) if run.graph is not None else incremental.Caps()
    if params.dropped_energy is not None and run.graph is not None:
        caps, exact = run.measured_caps(i, windows, len(tops), len(lefts))
    info = {"reduced_precision": float(dtype != torch.float32), "approximate": float(caps.active),
            "windows_run": float(len(windows)), "refined": 0.0, "predicted_correlation": 1.0}
    if params.refinement is None:
        rest = [k for k in range(len(windows)) if k not in exact]
        cheap = run.logits(i, [windows[k] for k in rest], dtype, caps, i * len(windows) + len(exact))
        logits = cheap.new_empty(len(windows), cheap.shape[1])
        logits[rest] = cheap
        for k, row in exact.items():
            logits[k] = row
    else:
        logits, refined = _refined(functools.partial(run.logits, i, run_dtype=dtype, caps=caps, done=None),
                                   tops, lefts, params.refinement, target)
        run.report((i + 1) * len(windows))
        info.update(refined)
        exact.clear()  # the refined lattice ran its own windows: the calibration's are not part of it
    if dtype == torch.float32 and not caps.active:
        return logits, info
    logits, predicted = _guarded(run, i, logits, target, windows, set(exact))
    if predicted is None:  # refused: finished exactly
        info.update(reduced_precision=0.0, approximate=0.0, refined=0.0)
        run.forget_caps()
    else:
        info["predicted_correlation"] = predicted
    return logits, info


STRONGEST, SPREAD = 2, 10  # windows the guard re-runs exactly: the largest drops, and a stratified random sample


def calibration_windows(rows: int, cols: int) -> list[int]:
    """Indices of the lattice's four corners and its centre: where changes are clamped by the border and where
    they spread furthest."""
    corners = {0, cols - 1, (rows - 1) * cols, rows * cols - 1, (rows // 2) * cols + cols // 2}
    return sorted(corners)


def _guarded(run: _WindowRunner, i: int, logits: Tensor, target: int, windows: list[tuple[int, int]],
             known: set[int]) -> tuple[Tensor, float | None]:
    """Keep a cheaper map only if the guard (:mod:`.guard`) trusts it: re-run exactly the windows of the largest
    drops and a stratified random sample of the others (they join the map), bound the map's correlation with the
    exact one from the sample's errors, and finish the image exactly when that falls under 0.99. Returns the
    logits and the bound (None: refused, the logits are exact)."""
    p = torch.softmax(logits, 1)[:, target]
    candidates = [k for k in range(len(windows)) if k not in known]
    strongest = sorted(candidates, key=lambda k: float(p[k]))[:STRONGEST]
    others = [k for k in candidates if k not in strongest]
    spread = guard.stratified(others, SPREAD)
    rows = run.logits(i, [windows[k] for k in strongest + spread], torch.float32, incremental.Caps(), None)
    # the strongest windows are exact from now on; the spread ones sample the errors of the windows left cheap
    errors = p[spread] - torch.softmax(rows[len(strongest):], 1)[:, target]
    logits = logits.clone()
    logits[strongest + spread] = rows
    left = [k for k in others if k not in spread]
    predicted = _map_correlation(torch.softmax(logits, 1)[:, target], errors, windows, left, run.params.window,
                                 tuple(run.x.shape[2:]))
    if _agrees(predicted):
        return logits, predicted
    if left:
        logits[left] = run.logits(i, [windows[k] for k in left], torch.float32, incremental.Caps(), None)
    run.report((i + 1) * len(windows))
    return logits, None


def _map_correlation(scores: Tensor, errors: Tensor, windows: list[tuple[int, int]], cheap: list[int], w: int,
                     size: tuple[int, ...]) -> float:
    """The guard's 95 % bound on the pixel map's correlation with the exact one (:func:`guard.correlation_of`):
    the map averages the windows covering each pixel, which averages their errors too."""
    height, width = size
    pixels = _window_means(windows, scores[None].cpu(), w, height, width)[0]
    count = _window_means(windows, torch.ones(1, len(windows)), w, height, width, mean=False)[0]
    covered = count > 0
    flags = torch.zeros(1, len(windows))
    flags[0, cheap] = 1.0
    # a pixel's error is the mean of its covering windows' errors, whose square is at most the mean of their
    # squares (Jensen) — whatever their correlation: the share of cheap windows, weighted by what they cover
    weight = float((_window_means(windows, flags, w, height, width, mean=False)[0] / count.clamp_min(1))
                   [covered].mean())
    return guard.correlation_of(float(pixels[covered].double().var()), errors, weight)


def _agrees(predicted: float) -> bool:
    """The guard's verdict (a seam for tests that score a cheaper map itself)."""
    return predicted >= guard.MIN_CORRELATION


def _window_means(windows: list[tuple[int, int]], drops: Tensor, w: int, height: int, width: int,
                  mean: bool = True) -> Tensor:
    """(N, H, W): each pixel's mean (``mean``, else sum) of the (N, windows) drops over the windows covering it."""
    total = torch.zeros(drops.shape[0], height, width, device=drops.device)
    count = torch.zeros(height, width, device=drops.device)
    for k, (top, left) in enumerate(windows):
        count[top:top + w, left:left + w] += 1
        total[:, top:top + w, left:left + w] += drops[:, k, None, None]
    return total / count.clamp_min(1) if mean else total


class _WindowRunner:
    """Runs an image's filled windows through the model in batches: incrementally (only the box each window
    changes) when the model traces, else as whole copies; in ``run_dtype``; reporting progress."""

    def __init__(self, model: nn.Module, x: Tensor, params: OcclusionParams, fill: Tensor, batch: int,
                 dtype: torch.dtype, progress: Progress | None, total: int) -> None:
        self.model, self.x, self.params, self.fill = model, x, params, fill
        self.device = x.device
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.runner = channels_last_copy(model) if has_conv and self.device.type == "cpu" else model
        self.traced = incremental.traced(self.runner) if params.incremental or dtype != torch.float32 else None
        self.graph = self.traced if params.incremental else None
        self.batches = [batch]  # batch sizes used, the last one current
        self.progress, self.total = progress, total
        self._session: tuple[int, incremental.Session] | None = None

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.total, None)

    def session(self, i: int, caps: incremental.Caps, dtype: torch.dtype) -> incremental.Session | None:
        """Image ``i``'s incremental session (its clean forward is run once and shared by every variant), or None
        for plain whole copies."""
        if self.traced is None or (self.graph is None and dtype == torch.float32):
            return None
        if self._session is None or self._session[0] != i:
            with torch.inference_mode():
                self._session = (i, incremental.Session(self.traced, self.x[i:i + 1]))
        return self._session[1].variant(caps, dtype)

    def logits(self, i: int, chosen: list[tuple[int, int]], run_dtype: torch.dtype, caps: incremental.Caps,
               done: int | None) -> Tensor:
        """Logits (len(chosen), K) of image ``i`` with each chosen window filled; progress from ``done`` (None:
        not reported)."""
        session = self.session(i, caps, run_dtype)
        return self._batches(i, chosen, done, run_dtype, session,
                             lambda chunk: self._chunk(i, self.x[i:i + 1], chunk, session, run_dtype))

    def measure(self, i: int, chosen: list[tuple[int, int]], share: float) -> tuple[Tensor, incremental.Caps]:
        """Exact logits of these windows of image ``i`` and the caps that keep all but ``share`` of their change
        energy on every map (:meth:`incremental.Session.measure`)."""
        session = self.session(i, incremental.Caps(), torch.float32)
        assert session is not None and self.graph is not None
        measured: list[incremental.Caps] = []

        def chunk(windows: list[tuple[int, int]]) -> Tensor:
            logits, caps = session.measure(self._filled(i, windows), [c[0] for c in windows],
                                           [c[1] for c in windows], share)
            measured.append(caps)
            return logits

        logits = self._batches(i, chosen, None, torch.float32, session, chunk)
        return logits, incremental.Caps(sizes=incremental.largest(c.sizes or {} for c in measured))

    def measured_caps(self, i: int, windows: list[tuple[int, int]], rows: int, cols: int
                      ) -> tuple[incremental.Caps, dict[int, Tensor]]:
        """Caps for ``dropped_energy``, and the exact logits of any windows run to measure them: measured on image
        ``i``'s corner and centre windows (:func:`calibration_windows`), or kept from an earlier image of this model
        at this input size, window, stride, fill and share (caps follow the architecture more than the image; the
        guard still checks every image, and a refusal forgets them)."""
        kept = _MEASURED.setdefault(self.traced, {}) if self.traced is not None else {}
        if self._caps_key in kept:
            return kept[self._caps_key], {}
        probes = calibration_windows(rows, cols)
        assert self.params.dropped_energy is not None
        logits, caps = self.measure(i, [windows[k] for k in probes], self.params.dropped_energy)
        kept[self._caps_key] = caps
        return caps, dict(zip(probes, logits, strict=True))

    def forget_caps(self) -> None:
        if self.traced is not None:
            _MEASURED.get(self.traced, {}).pop(self._caps_key, None)

    @property
    def _caps_key(self) -> tuple[object, ...]:
        p = self.params
        return tuple(self.x.shape[1:]), p.window, p.stride, str(p.fill), p.dropped_energy

    def _batches(self, i: int, chosen: list[tuple[int, int]], done: int | None, run_dtype: torch.dtype,
                 session: incremental.Session | None, run: Callable[[list[tuple[int, int]]], Tensor]) -> Tensor:
        out = []
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=run_dtype,
                                                    enabled=run_dtype != torch.float32 and session is None):
            start = 0
            while start < len(chosen):
                chunk = chosen[start:start + self.batches[-1]]
                out.append(run(chunk))
                start += len(chunk)
                if done is not None:
                    self.report(done + start)
        return torch.cat(out)

    def _filled(self, i: int, chunk: list[tuple[int, int]]) -> Tensor:
        w = self.params.window
        return torch.stack([self.fill[i, :, top:top + w, left:left + w] for top, left in chunk])

    def _chunk(self, i: int, image: Tensor, chunk: list[tuple[int, int]], session: incremental.Session | None,
               run_dtype: torch.dtype) -> Tensor:
        w, fill = self.params.window, self.fill
        if self.graph is not None and session is not None:
            logits = session.logits(self._filled(i, chunk), [c[0] for c in chunk], [c[1] for c in chunk]).float()
            if self.params.batch_size is None:  # boxes need less memory than whole copies: re-size the batch
                self.batches.append(_budget_batch(session.largest_per_sample, self.x.shape[1:].numel(),
                                                  self.params.memory_budget_mb, run_dtype))
            return logits
        copies = image.repeat(len(chunk), 1, 1, 1)
        for j, (top, left) in enumerate(chunk):
            copies[j, :, top:top + w, left:left + w] = fill[i, :, top:top + w, left:left + w]
        if self.runner is not self.model:
            copies = copies.contiguous(memory_format=torch.channels_last)
        return (session.forward(copies) if session is not None else self.runner(copies)).float()


def _refined(run: Callable[[list[tuple[int, int]]], Tensor], tops: list[int], lefts: list[int], tolerance: float,
             target: int) -> tuple[Tensor, dict[str, float]]:
    """(windows, K) logits of one image by adaptive refinement over its window lattice (:mod:`.refinement`)."""

    def at(chosen: list[tuple[int, int]]) -> Tensor:
        return run([(tops[r], lefts[c]) for r, c in chosen])

    def probability(logits: Tensor) -> Tensor:
        return torch.softmax(logits.float(), -1)[..., target]

    logits, info = refinement.refine(len(tops), len(lefts), tolerance, at, probability)
    return logits.flatten(0, 1), info


_MEASURED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], incremental.Caps]] = \
    weakref.WeakKeyDictionary()  # measured caps per traced model and geometry

_CHANNELS_LAST: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], nn.Module]] = weakref.WeakKeyDictionary()


def channels_last_copy(model: nn.Module) -> nn.Module:
    """A channels-last copy of ``model`` for the many perturbed forwards (oneDNN's convolutions run
    ~1.35× faster on it on CPU; measured on ResNet-50), cached until a parameter or buffer changes.
    The caller's model is never converted."""
    tensors = [*model.parameters(), *model.buffers()]
    versions = tuple(t._version for t in tensors) + tuple(id(t) for t in tensors)
    cached = _CHANNELS_LAST.get(model)
    if cached is None or cached[0] != versions:
        cached = (versions, copy.deepcopy(model).to(memory_format=torch.channels_last))
        _CHANNELS_LAST[model] = cached
    return cached[1]


def _budget_batch(largest: int, input_numel: int, budget_mb: int, dtype: torch.dtype) -> int:
    """Copies per pass such that the input copies plus the two largest live activations fit the budget."""
    bytes_per_copy = (2 * max(largest, 1) + input_numel) * torch.finfo(dtype).bits // 8 + input_numel * 4
    return max(1, min(MAX_BATCH, math.floor(budget_mb * 2**20 / bytes_per_copy)))
