"""Occlusion speed: ConvLens vs Captum ``Occlusion`` vs a naive one-forward-per-window loop.

    .venv/bin/python bench/occlusion.py --out docs/benchmarks.md     # full run (a few minutes)
    .venv/bin/python bench/occlusion.py --quick                       # smoke run, prints only

Cases: ResNet-50 (random weights from seed 0, 224 px, one seeded random input, window 32, stride 16: 169 windows)
and the built-in model (4 held-out images, 64 px, window 8, stride 4: 225 windows each). Same model
object, input, windows, fill (0 in input space: Captum's default baseline) and explicit targets for
everyone. Agreement first: our probability-drop map must correlate ≥ 0.99 with Captum's (Captum
attributing the softmax probability of the target), for every ConvLens mode, else the run aborts. Then
interleaved timing (median of N). FLOPs done: ConvLens runs counted whole with ``torch.utils.flop_counter``
(the incremental modes do fewer than one forward per window); the peers: the model's forward FLOPs × the
number of forwards. The fraction of peak: FLOPs done / time against a 2048² fp32 matmul timed in the same
run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import fmt_ms, interleaved, machine_info, markdown_table, replace_section  # noqa: E402

HEADING = "## Occlusion (bench/occlusion.py)"
THREADS = 2
SHARE = 0.005
OURS, OURS_CAPPED, OURS_CAPPED_REDUCED, OURS_REDUCED, OURS_COPIES, CAPTUM_1, CAPTUM_64, NAIVE = (
    "ConvLens (incremental, exact: default)", f"ConvLens measured caps {SHARE} (guarded)",
    f"ConvLens measured caps {SHARE} + reduced precision (guarded)",
    "ConvLens reduced precision (guarded)", "ConvLens whole copies", "Captum ppe=1", "Captum ppe=64", "naive loop")
REFINE = 0.2
OURS_REFINED = f"ConvLens adaptive refinement {REFINE} (guarded)"
MODES: dict[str, dict[str, object]] = {
    OURS: {}, OURS_CAPPED: {"dropped_energy": SHARE},
    OURS_CAPPED_REDUCED: {"dropped_energy": SHARE, "precision": "reduced"},
    OURS_REDUCED: {"precision": "reduced"}, OURS_REFINED: {"refinement": REFINE}, OURS_COPIES: {"incremental": False}}
GUARDED = {OURS_CAPPED: "approximate", OURS_CAPPED_REDUCED: "approximate", OURS_REDUCED: "reduced_precision",
           OURS_REFINED: "refined"}  # mode → scalar saying it was kept
TRADE_OFF = (0.0, 0.1, 0.2, 0.3)  # refinement tolerances of the speed/correlation curve
SHARES = (0.05, 0.02, 0.01, 0.005, 0.002, 0.0005)  # dropped_energy shares of the speed/correlation curve
TAUS = (0.9, 0.8, 0.7)  # Krypton's uniform τ, for comparison


@dataclass
class Case:
    name: str
    net: nn.Module
    x: Tensor
    target: Tensor
    window: int
    stride: int

    @property
    def windows(self) -> int:
        side = (self.x.shape[-1] - self.window) // self.stride + 1
        return side * side * len(self.x)


def cases() -> list[Case]:
    from PIL import Image

    from convlens.builtin.dataset import render_batch
    from convlens.models import load_model

    torch.manual_seed(0)  # random weights, but the same ones every run (unseeded, the target's probability
    resnet = load_model("resnet50", weights="random")  # can round to 1.0 and every map to 0)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    builtin = load_model("builtin")
    imgs, _, _ = render_batch(1, 4)
    xb = torch.cat([builtin.prepare(Image.fromarray(i))[1] for i in imgs])
    with torch.no_grad():
        targets = [resnet.net(x).argmax(1), builtin.net(xb).argmax(1)]
    return [Case("resnet50 224 px, 1 image, window 32 stride 16", resnet.net, x, targets[0], 32, 16),
            Case("builtin 64 px, 4 images, window 8 stride 4", builtin.net, xb, targets[1], 8, 4)]


def ours(case: Case, mode: str = OURS, scalars: dict[str, float] | None = None) -> Tensor:
    from convlens.techniques.attribution.occlusion import OcclusionParams, occlusion

    params = OcclusionParams(window=case.window, stride=case.stride, fill="zero", **MODES[mode])  # type: ignore[arg-type]
    result = occlusion(case.net, case.x, case.target, params)
    if scalars is not None:
        scalars.update({k: float(v) for k, v in result.scalars.items() if not isinstance(v, Tensor)})
    return result.raw


def flops_done(case: Case, mode: str) -> tuple[float, dict[str, float]]:
    """FLOPs one ConvLens run actually does (counted with ``torch.utils.flop_counter``) and its scalars."""
    from torch.utils.flop_counter import FlopCounterMode

    scalars: dict[str, float] = {}
    with FlopCounterMode(display=False) as counter:
        ours(case, mode, scalars)
    return float(counter.get_total_flops()), scalars


def captum(case: Case, ppe: int) -> Tensor:
    from captum.attr import Occlusion

    def probability(x: Tensor) -> Tensor:
        return torch.softmax(case.net(x), dim=1)

    with torch.no_grad():
        attr = Occlusion(probability).attribute(case.x, sliding_window_shapes=(3, case.window, case.window),
                                                strides=(3, case.stride, case.stride), target=case.target,
                                                baselines=0, perturbations_per_eval=ppe)
    return attr.sum(dim=1) / 3  # Captum spreads each window's drop over the 3 channels it occluded


def naive(case: Case) -> Tensor:
    """What one writes by hand: one forward per window, accumulate, divide by coverage."""
    n, _, h, w = case.x.shape
    out, count = torch.zeros(n, h, w), torch.zeros(h, w)
    with torch.no_grad():
        base = torch.softmax(case.net(case.x), 1).gather(1, case.target[:, None])[:, 0]
        for top in range(0, h - case.window + 1, case.stride):
            for left in range(0, w - case.window + 1, case.stride):
                x = case.x.clone()
                x[:, :, top:top + case.window, left:left + case.window] = 0
                p = torch.softmax(case.net(x), 1).gather(1, case.target[:, None])[:, 0]
                out[:, top:top + case.window, left:left + case.window] += (base - p)[:, None, None]
                count[top:top + case.window, left:left + case.window] += 1
    return out / count.clamp_min(1)


def trade_off(case: Case, reference: Tensor, naive_s: float, captum_s: float) -> list[list[str]]:
    """One row per setting of a cheaper mode: windows run, time, speed-ups, correlation with Captum with and
    without its guard, kept."""
    import time

    from convlens.techniques.attribution import occlusion as occlusion_module
    from convlens.techniques.attribution.occlusion import OcclusionParams, occlusion

    settings = [("measured caps", "dropped_energy", v) for v in SHARES] + [
        ("Krypton τ", "approximation", v) for v in TAUS] + [("refinement", "refinement", v) for v in TRADE_OFF]
    rows = []
    for label, key, value in settings:
        params = OcclusionParams(window=case.window, stride=case.stride, fill="zero", **{key: value})  # type: ignore[arg-type]
        occlusion_module._MEASURED.clear()
        occlusion(case.net, case.x, case.target, params)  # measures the caps (kept per model), warms up
        start = time.perf_counter()
        result = occlusion(case.net, case.x, case.target, params)
        took = time.perf_counter() - start
        guard_off = occlusion_module._agrees
        occlusion_module._agrees = lambda *_: True
        try:
            unguarded = occlusion(case.net, case.x, case.target, params).raw
        finally:
            occlusion_module._agrees = guard_off
        assert unguarded is not None and result.raw is not None
        kept = float(result.scalars["approximate" if key != "refinement" else "refined"])
        rows.append([case.name, f"{label} {value:g}", f"{float(result.scalars['windows_run']):.0f} / {case.windows}",
                     fmt_ms(took), f"{naive_s / took:.2f}×", f"{captum_s / took:.2f}×",
                     f"{correlation(unguarded, reference):.4f}",
                     f"{float(result.scalars['predicted_correlation']):.4f}" if kept else "—",
                     f"{kept:.0f}", f"{correlation(result.raw, reference):.4f}"])
        print(rows[-1], flush=True)
    return rows


def correlation(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1])


def forward_flops(net: nn.Module, x: Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x[:1])
    return float(counter.get_total_flops())


def matmul_peak(reps: int = 10) -> float:
    """GFLOP/s of a 2048 × 2048 fp32 matmul, best of ``reps``."""
    import time

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="markdown file whose occlusion section is (re)written")
    ap.add_argument("--quick", action="store_true", help="one timed round: a smoke run, not a measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    peak = matmul_peak()
    load = os.getloadavg()
    from bench.cpu_kernels import line as kernel_line

    kernels = kernel_line()
    print(f"matmul peak {peak:.0f} GFLOP/s, load average {load[0]:.2f}\n{kernels}", flush=True)
    rows, checks, kept, curve = [], [], [], []
    for case in cases():
        reference = captum(case, 64)
        agreement = {**{mode: correlation(ours(case, mode), reference) for mode in MODES},
                     NAIVE: correlation(naive(case), reference)}
        checks.append((case.name, agreement))
        print(case.name, {k: round(v, 4) for k, v in agreement.items()}, flush=True)
        if not all(v >= 0.99 for v in agreement.values()):  # NaN (a constant map) fails too
            raise SystemExit(f"disagreement on {case.name}: {agreement}")
        forward = forward_flops(case.net, case.x)
        flops = {CAPTUM_1: forward * (case.windows + len(case.x)), NAIVE: forward * (case.windows + len(case.x))}
        flops[CAPTUM_64] = flops[CAPTUM_1]
        for mode in MODES:
            flops[mode], scalars = flops_done(case, mode)
            if mode in GUARDED:
                kept.append((case.name, mode, scalars.get(GUARDED[mode], 0.0)))
        methods = {**{mode: lambda c=case, m=mode: ours(c, m) for mode in MODES},
                   CAPTUM_1: lambda c=case: captum(c, 1), CAPTUM_64: lambda c=case: captum(c, 64),
                   NAIVE: lambda c=case: naive(c)}
        reps = 1 if args.quick else (3 if "resnet" in case.name else 7)
        stats = interleaved(methods, reps=reps, warmup=1, log=print)
        best_captum = min(stats[CAPTUM_1].median, stats[CAPTUM_64].median)
        curve += trade_off(case, reference, stats[NAIVE].median, best_captum)
        for name, s in stats.items():
            gflops = flops[name] / s.median / 1e9
            rows.append([case.name, name, fmt_ms(s.median), f"{best_captum / s.median:.2f}×",
                         f"{stats[NAIVE].median / s.median:.2f}×", f"{flops[name] / 1e9:.0f}",
                         f"{flops[CAPTUM_1] / flops[name]:.2f}×", f"{gflops:.0f}", f"{gflops / peak:.0%}"])
    info = machine_info(("captum",))
    command = "python bench/" + Path(__file__).name + (" " + shlex.join(argv or sys.argv[1:]) if (argv or sys.argv[1:])
                                                       else "")
    body = "\n".join([
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `{command}` on {info.get('cpu', '?')}, "
        f"{THREADS} threads ({kernels}), torch {info.get('torch', '?')}, captum {info.get('captum', '?')}, "
        f"load average {load[0]:.2f} at the start (other jobs shared the 2 cores)"
        + (" — **quick smoke run, one round: not a measurement**" if args.quick else "") + ".",
        "",
        "Same model object, input, windows, fill (0 in input space) and targets for everyone; median wall time of "
        "interleaved rounds. *vs Captum*: the faster Captum setting's time / this one's (> 1: faster than "
        "Captum at its best); *vs naive*: the naive loop's time / this one's; *GFLOP*: FLOPs actually done "
        "(ConvLens: counted with `torch.utils.flop_counter` over a whole run; the others: model forward FLOPs × "
        "forwards); *fewer*: the peers' FLOPs / this one's; *GFLOP/s*: FLOPs done / time; *of peak*: against a "
        f"2048² fp32 matmul in the same run ({peak:.0f} GFLOP/s). *Incremental* (the default) recomputes each "
        "early layer only on the box a window changes (Nakandala et al. 2019), exact; *measured caps* "
        f"(`dropped_energy={SHARE}`) caps the boxes of every map size where windows' boxes grow over most of the "
        "map at one size, measured on the corner and centre windows run exactly (kept per model and geometry), "
        f"that leaves out at most {SHARE} of their change energy; *reduced precision* holds and convolves each "
        "window's change in bfloat16 where the CPU runs it faster (float32 elsewhere); *refinement* interpolates "
        "windows where the map is flat. Each cheaper map is kept only when the guard's 95 % lower bound on its "
        "correlation with the exact map is ≥ 0.99 (2 strongest windows and a stratified random 10 re-run "
        "exactly), else the image is finished exactly; *whole copies*: the previous default, one full forward per "
        "window in batches.",
        "",
        markdown_table(["case", "method", "median ms", "vs Captum", "vs naive", "GFLOP", "fewer", "GFLOP/s",
                        "of peak"], rows, "llrrrrrrr"),
        "",
        "Agreement with Captum (ppe=64), Pearson correlation of the probability-drop maps: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()) for name, agreement in checks) + ".",
        "",
        "Cheaper map kept by its guard (1) or redone exactly (0): " + "; ".join(
            f"{name}, {mode}: {flag:.0f}" for name, mode, flag in kept) + ".",
        "",
        "Speed against agreement of the cheaper modes (one run each after a warm-up that measures the caps; same "
        "round as the table above): *unguarded* is the cheap map's correlation with Captum's before the guard "
        "looks at it; *predicted* the guard's 95 % lower bound on it; *kept* 0 means the bound was under 0.99 and "
        "the image was finished exactly (then *ms* includes that); *result* the correlation of what was "
        "returned. Refinement tolerance 0 runs every window whose cell changes at all.",
        "",
        markdown_table(["case", "setting", "windows run", "ms", "vs naive", "vs Captum", "unguarded", "predicted",
                        "kept", "result"], curve, "lrrrrrrrrr"),
    ])
    print(body)
    if args.out:  # a run under CPU caps, or on a CPU below AVX-512, keeps its own section beside the others
        from bench.cpu_kernels import CAPS
        from bench.timing import cpu_model

        caps = " ".join(f"{k}={os.environ[k]}" for k in CAPS if k in os.environ)
        capability = torch.backends.cpu.get_cpu_capability()
        where = caps or ("" if capability.startswith("AVX512") else f"{capability} CPU ({cpu_model()})")
        replace_section(args.out, HEADING + (f": {where}" if where else ""), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
