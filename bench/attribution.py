"""Attribution speed: ConvLens vs Captum vs pytorch-grad-cam, on the same model and inputs.

    .venv/bin/python bench/attribution.py --out docs/benchmarks.md      # full run (~5 min)
    .venv/bin/python bench/attribution.py --quick                        # smoke run, prints only
    .venv/bin/python bench/attribution.py --techniques peers --out docs/benchmarks.md   # only the peers' section

Cases: ResNet-50 (random weights, 224 px, seeded random inputs) and the built-in model
(64 px, real images from ``render_batch(seed=1, n=16)``), each at batch 1 and 16.
Techniques: vanilla saliency, guided backprop, Grad-CAM. Every method gets the same
model object (eval mode, parameters frozen), the same input and the same explicit
target classes (the model's top-1 class of each input, computed once beforehand).

Before timing, the outputs are checked against the peers; the run aborts if they
disagree. Then all methods of a case are timed round-robin (interleaved) after
warm-up, and the median per call is reported with the ratio ours / faster peer.
The target is a ratio <= 1.1.

Registered techniques with a Captum peer in ``bench/attribution_peers.py`` (SmoothGrad, Integrated Gradients)
are timed as a second group, with their own repetitions, agreement checks and section of the output
(target <= 1.05); ``--techniques base`` or ``peers`` runs one group.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import attribution_peers  # noqa: E402
from bench.timing import (  # noqa: E402
    Method,
    Stats,
    fmt_ms,
    interleaved,
    load_average,
    machine_info,
    markdown_table,
    replace_section,
    wait_for_quiet,
)

HEADING = "## Attribution (bench/attribution.py)"
TARGET_RATIO = 1.1
QUIET_LOAD = 0.5  # 1-min load average above which the results are flagged as noisy
THREADS = 2

# (warm-up rounds, timed rounds) per case, full and --quick.
REPS_FULL = {"resnet50 b1": (3, 41), "resnet50 b16": (2, 15), "builtin b1": (10, 151), "builtin b16": (5, 101)}
REPS_QUICK = {"resnet50 b1": (1, 3), "resnet50 b16": (1, 2), "builtin b1": (2, 10), "builtin b16": (2, 10)}

TECHNIQUES = ("saliency", "guided backprop", "Grad-CAM")
PEERS_HEADING = "## Attribution: SmoothGrad and Integrated Gradients (bench/attribution.py)"
PEERS_TARGET = 1.05
# The peers' calls are 16–50 forward and backward passes each: fewer rounds.
PEERS_REPS_FULL = {"resnet50 b1": (1, 9), "resnet50 b16": (1, 3), "builtin b1": (2, 31), "builtin b16": (1, 11)}
PEERS_REPS_QUICK = {"resnet50 b1": (1, 2), "resnet50 b16": (0, 1), "builtin b1": (1, 3), "builtin b16": (1, 2)}
OURS, CAPTUM, PGC = "ConvLens", "Captum", "pytorch-grad-cam"


class Disagreement(RuntimeError):
    """Our output and a peer's differ: timing them against each other would be meaningless."""


@dataclass
class Case:
    name: str  # "resnet50 b16"
    model_desc: str
    net: nn.Module
    x: Tensor  # (N, 3, H, W) normalised model input
    target: Tensor  # (N,) int64
    layer: str  # Grad-CAM layer
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # (check, detail, ok)
    stats: dict[str, Stats] = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs


def resnet50_cases() -> list[Case]:
    from convlens.models import load_model

    loaded = load_model("resnet50", weights="random")
    torch.manual_seed(0)
    size = loaded.preprocessing.input_size
    x16 = torch.randn(16, 3, size, size)
    return _cases("resnet50", f"ResNet-50, random weights (seed 0 inputs, {size} px)", loaded, x16)


def builtin_cases() -> list[Case]:
    from convlens.builtin.dataset import render_batch
    from convlens.models import WeightsNotFoundError, load_model

    try:
        loaded = load_model("builtin")
        desc = "built-in CNN, trained checkpoint"
    except WeightsNotFoundError:
        print("WARNING: convlens/builtin/builtin.pt not found; timing the built-in model with random weights")
        loaded = load_model("builtin", weights="random")
        desc = "built-in CNN, RANDOM weights (checkpoint missing)"
    images, _masks, _labels = render_batch(seed=1, n=16)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x16 = loaded.preprocessing.normalize(pixels).contiguous()
    size = loaded.preprocessing.input_size
    return _cases("builtin", f"{desc} (render_batch(seed=1, n=16), {size} px)", loaded, x16)


def _cases(prefix: str, desc: str, loaded, x16: Tensor) -> list[Case]:  # type: ignore[no-untyped-def]
    net = loaded.net
    assert not any(p.requires_grad for p in net.parameters()), "load_model should freeze the parameters"
    with torch.no_grad():
        target = net(x16).argmax(dim=1)
    layer = loaded.default_cam_layer
    return [
        Case(f"{prefix} b1", desc, net, x16[:1].clone(), target[:1].clone(), layer),
        Case(f"{prefix} b16", desc, net, x16, target, layer),
    ]


# ----------------------------------------------------------------------------- methods


def build_methods(case: Case) -> dict[str, dict[str, Method]]:
    """technique → {library → Method}. Peers' objects are built here, outside the timed calls."""
    from captum.attr import GuidedBackprop, LayerAttribution, LayerGradCam, Saliency
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from convlens.techniques.attribution.gradcam import GradCamParams, grad_cam
    from convlens.techniques.attribution.guided import guided_backprop
    from convlens.techniques.attribution.saliency import saliency

    net, x, target, layer = case.net, case.x, case.target, case.layer
    layer_module = net.get_submodule(layer)
    size = tuple(x.shape[-2:])
    cam_params = GradCamParams(layer=layer)

    captum_saliency = Saliency(net)
    captum_guided = GuidedBackprop(net)
    captum_gradcam = LayerGradCam(net, layer_module)

    def captum_gradcam_call() -> Tensor:
        # LayerGradCam gives the layer-grid map; ours also upsamples to the input, so the
        # peer's (documented) upsampling is counted too, with the same bilinear mode.
        raw = captum_gradcam.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(raw, size, interpolate_mode="bilinear")

    # pytorch-grad-cam keeps forward hooks on the model for the lifetime of the object.
    # It is constructed once here; its hooks are registered (setup) and released
    # (teardown) around each of its calls, untimed, so they neither run nor accumulate
    # activations while the other methods are timed. It backpropagates with
    # loss.backward(), which needs a graph: with frozen parameters that graph must
    # start at the input, so it gets a copy of x that requires grad (the alternative,
    # unfreezing the parameters, would make it compute every weight gradient too).
    pgc = GradCAM(model=net, target_layers=[layer_module])
    pgc.activations_and_grads.release()
    pgc_targets = [ClassifierOutputTarget(int(c)) for c in target]
    x_pgc = x.clone().requires_grad_(True)

    def pgc_setup() -> None:
        pgc.activations_and_grads = ActivationsAndGradients(net, [layer_module], None, True)
        x_pgc.grad = None

    def pgc_teardown() -> None:
        pgc.activations_and_grads.release()

    return {
        "saliency": {
            OURS: Method(lambda: saliency(net, x, target)),
            CAPTUM: Method(lambda: captum_saliency.attribute(x, target=target, abs=True)),
        },
        "guided backprop": {
            OURS: Method(lambda: guided_backprop(net, x, target)),
            CAPTUM: Method(lambda: captum_guided.attribute(x, target=target)),
        },
        "Grad-CAM": {
            OURS: Method(lambda: grad_cam(net, x, target, cam_params)),
            CAPTUM: Method(captum_gradcam_call),
            PGC: Method(lambda: pgc(input_tensor=x_pgc, targets=pgc_targets), pgc_setup, pgc_teardown),
        },
    }


# ----------------------------------------------------------------------------- agreement


def _rel_err(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b| (0 when both are all zero)."""
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def _minmax(m: Tensor) -> Tensor:
    flat = m.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(m)


def _correlations(a: Tensor, b: Tensor) -> list[float]:
    """Pearson correlation per sample; a pair of flat (constant) maps counts as 1."""
    out = []
    for u, v in zip(a.flatten(1).double(), b.flatten(1).double(), strict=True):
        su, sv = float(u.std()), float(v.std())
        if su < 1e-9 and sv < 1e-9:
            out.append(1.0)
        elif su < 1e-9 or sv < 1e-9:
            out.append(0.0)
        else:
            out.append(float(torch.corrcoef(torch.stack([u, v]))[0, 1]))
    return out


def check_agreement(case: Case, methods: dict[str, dict[str, Method]], rtol: float = 1e-4) -> None:
    """Run every method once and compare ours with the peers; raise Disagreement on a mismatch."""

    def run(technique: str, lib: str):  # type: ignore[no-untyped-def]
        m = methods[technique][lib]
        if m.setup:
            m.setup()
        try:
            return m.call()
        finally:
            if m.teardown:
                m.teardown()

    def record(check: str, err: float, tol: float, what: str = "max rel. diff") -> None:
        ok = err <= tol
        case.checks.append((check, f"{what} {err:.1e} (tol {tol:.0e})", ok))

    ours = run("saliency", OURS)
    theirs = run("saliency", CAPTUM).amax(dim=1)
    assert ours.raw is not None
    record("saliency raw vs Captum Saliency(abs=True) amax over RGB", _rel_err(ours.raw, theirs), rtol)
    assert torch.equal(ours.target, case.target), "ours explained a different target"

    ours = run("guided backprop", OURS)
    theirs = run("guided backprop", CAPTUM)
    assert ours.gradient is not None
    record("guided gradient vs Captum GuidedBackprop", _rel_err(ours.gradient, theirs), rtol)

    ours = run("Grad-CAM", OURS)
    assert ours.raw is not None
    captum_up = run("Grad-CAM", CAPTUM)
    from captum.attr import LayerGradCam

    captum_raw = LayerGradCam(case.net, case.net.get_submodule(case.layer)).attribute(
        case.x, target=case.target, relu_attributions=True
    )[:, 0]
    record(f"Grad-CAM raw ({case.layer}) vs Captum LayerGradCam", _rel_err(ours.raw, captum_raw), rtol)
    peak = captum_up.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    record("Grad-CAM map vs Captum, upsampled (bilinear) / max", _rel_err(ours.map, captum_up[:, 0] / peak), rtol)
    pgc_map = torch.from_numpy(np.asarray(run("Grad-CAM", PGC))).float()
    a, b = _minmax(ours.map.detach()), _minmax(pgc_map)
    corr = min(_correlations(a, b))
    ok = corr > 0.99
    case.checks.append(
        (
            "Grad-CAM map vs pytorch-grad-cam (both min-max normalised; it resizes with cv2)",
            f"min correlation {corr:.5f} (> 0.99), max abs diff {float((a - b).abs().max()):.1e}",
            ok,
        )
    )

    bad = [c for c in case.checks if not c[2]]
    for check, detail, ok in case.checks:
        print(f"    [{'ok' if ok else 'FAIL'}] {check}: {detail}")
    if bad:
        raise Disagreement(
            f"{case.name}: outputs disagree with the peers ("
            + "; ".join(f"{c}: {d}" for c, d, _ in bad)
            + "). Not timing methods that compute different things."
        )


# ----------------------------------------------------------------------------- run


def count_hooks(net: nn.Module) -> int:
    from convlens.hooks import count_hooks as ch

    return ch(net)


def build_peer_methods(case: Case) -> dict[str, dict[str, Method]]:
    """The registered techniques with a Captum peer (bench/attribution_peers.py); checks them first."""
    methods, rtol = {}, 1e-4
    for name in attribution_peers.names():
        pair = attribution_peers.pair(name, case.name, case.net, case.x, case.target)
        for check, err in pair.check():
            case.checks.append((check, f"max rel. diff {err:.1e} (tol {rtol:.0e})", err <= rtol))
        methods[attribution_peers.title(name)] = {OURS: Method(pair.ours), CAPTUM: Method(pair.captum)}
    for check, detail, ok in case.checks:
        print(f"    [{'ok' if ok else 'FAIL'}] {check}: {detail}")
    bad = [f"{c}: {d}" for c, d, ok in case.checks if not ok]
    if bad:
        raise Disagreement(f"{case.name}: outputs disagree with the peers ({'; '.join(bad)}).")
    return methods


def run_case(case: Case, warmup: int, reps: int, verbose: bool, peers: bool = False) -> None:
    hooks_before = count_hooks(case.net)
    print(f"\n== {case.name}: {case.model_desc}; x {tuple(case.x.shape)}, Grad-CAM layer {case.layer}")
    if peers:
        methods = build_peer_methods(case)
    else:
        methods = build_methods(case)
        check_agreement(case, methods)
    flat = {f"{tech} / {lib}": m for tech, libs in methods.items() for lib, m in libs.items()}
    print(f"  timing {len(flat)} methods: {warmup} warm-up + {reps} interleaved rounds")
    stats = interleaved(flat, reps=reps, warmup=warmup, log=print if verbose else None)
    case.stats = stats
    hooks_after = count_hooks(case.net)
    if hooks_after != hooks_before:
        raise RuntimeError(f"{case.name}: {hooks_after - hooks_before} hooks left on the model")


@dataclass(frozen=True)
class Row:
    case: str
    technique: str
    ours: Stats
    peers: dict[str, Stats]
    target: float = TARGET_RATIO

    @property
    def best_peer(self) -> tuple[str, Stats]:
        return min(self.peers.items(), key=lambda kv: kv[1].median)

    @property
    def ratio(self) -> float:
        return self.ours.median / self.best_peer[1].median

    @property
    def met(self) -> bool:
        return self.ratio <= self.target


def rows_of(cases: list[Case], target: float = TARGET_RATIO) -> list[Row]:
    rows = []
    for case in cases:
        for tech in dict.fromkeys(k.split(" / ", 1)[0] for k in case.stats):
            libs = {k.split(" / ", 1)[1]: s for k, s in case.stats.items() if k.split(" / ", 1)[0] == tech}
            ours = libs.pop(OURS)
            rows.append(Row(case.name, tech, ours, libs, target))
    return rows


def table(rows: list[Row]) -> str:
    target = rows[0].target if rows else TARGET_RATIO
    header = ["case", "technique", f"{OURS} ms", f"{CAPTUM} ms", f"{PGC} ms", "ours / faster peer", f"≤ {target}×"]
    body = []
    for r in rows:
        cap = r.peers.get(CAPTUM)
        pgc = r.peers.get(PGC)
        body.append(
            [
                r.case,
                r.technique,
                fmt_ms(r.ours.median),
                fmt_ms(cap.median) if cap else "–",
                fmt_ms(pgc.median) if pgc else "–",
                f"{r.ratio:.2f} ({r.best_peer[0]})",
                "yes" if r.met else "**MISS**",
            ]
        )
    return markdown_table(header, body, "llrrrrl")


def spread_table(rows: list[Row]) -> str:
    header = ["case", "technique", "library", "n", "median ms", "IQR ms", "min ms"]
    body = []
    for r in rows:
        for lib, s in [(OURS, r.ours), *r.peers.items()]:
            body.append(
                [r.case, r.technique, lib, str(s.n), fmt_ms(s.median), f"{fmt_ms(s.q1)}–{fmt_ms(s.q3)}", fmt_ms(s.min)]
            )
    return markdown_table(header, body, "lllrrrr")


def report(cases: list[Case], rows: list[Row], info: dict[str, str], command: str, quick: bool, busy: bool,
           target: float = TARGET_RATIO, includes: list[str] | None = None) -> str:
    """``busy``: the machine was loaded at the start (the load at the end includes this run); ``includes``: what
    each call includes (default: the three techniques compared by hand)."""
    load_end = load_average()
    lines = [
        f"Run {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}"
        + (" — **quick smoke run (`--quick`), too few repetitions to cite**" if quick else "") + ".",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items())
        + (f"; load average at end {', '.join(f'{v:.2f}' for v in load_end)} (includes this run)" if load_end else "")
        + ".",
        "",
        *(
            [f"**The machine was busy (1-min load average ≥ {QUIET_LOAD} at the start): these timings are noisy;"
             " re-run on a quiet machine (`--wait-quiet 1800`) before citing them.**", ""]
            if busy else []
        ),
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "Models and inputs: "
        + "; ".join(sorted({f"{c.name.split()[0]}: {c.model_desc}" for c in cases})) + ". "
        "Every method gets the same model object (eval, parameters frozen), the same input "
        "and the same explicit targets (the model's top-1 class per input, computed once).",
        "",
        "### Agreement checks (run before timing; the script aborts on a failure)",
        "",
    ]
    for case in cases:
        lines.append(f"- **{case.name}**: " + "; ".join(f"{c} — {d} {'✓' if ok else '✗'}" for c, d, ok in case.checks))
    lines += [
        "",
        f"### Median wall-clock time per call (target: ours ≤ {target}× the faster peer)",
        "",
        table(rows),
        "",
        "What each call includes:",
        "",
        *(includes if includes is not None else [
        "- ConvLens: the full technique call, returning an `Attribution` (normalised map, raw map,"
        " logits; for saliency/guided also the signed gradient; for Grad-CAM bilinear upsampling to the input).",
        "- Captum saliency: `Saliency(net).attribute(x, target=t, abs=True)` (no channel max,"
        " no normalisation); guided: `GuidedBackprop(net).attribute(x, target=t)`; Grad-CAM:"
        " `LayerGradCam(net, layer).attribute(x, target=t, relu_attributions=True)` +"
        " `LayerAttribution.interpolate(..., interpolate_mode=\"bilinear\")`.",
        "- pytorch-grad-cam: `GradCAM(model=net, target_layers=[layer])`"
        "`(input_tensor=x, targets=[ClassifierOutputTarget(c), ...])`,"
        " constructed once; its hooks are registered/released (untimed) around each of its calls."
        " With frozen parameters its `loss.backward()` needs an input that requires grad, so it"
        " backpropagates to the input; ours and Captum's Grad-CAM stop at the layer.",
        ]),
        f"- Methods of one case run interleaved (round-robin, rotating start), after warm-up;"
        f" `torch.set_num_threads({THREADS})`; a GC pass before each call, GC paused during it.",
        "",
        "<details><summary>Spread (n, median, inter-quartile range, min)</summary>",
        "",
        spread_table(rows),
        "",
        "</details>",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="markdown file whose attribution section is (re)written")
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, not a measurement")
    ap.add_argument("--cases", nargs="+", choices=list(REPS_FULL), help="run only these cases")
    ap.add_argument("--verbose", action="store_true", help="print every round's times")
    ap.add_argument("--techniques", choices=("all", "base", "peers"), default="all",
                    help="base: saliency, guided, Grad-CAM; peers: the registered techniques of "
                         "bench/attribution_peers.py (each group writes its own section)")
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="SECONDS",
        help=f"first wait up to SECONDS for the 1-min load average to drop below {QUIET_LOAD}",
    )
    args = ap.parse_args(argv)
    if args.wait_quiet > 0 and not wait_for_quiet(QUIET_LOAD, args.wait_quiet):
        print(f"WARNING: the machine did not become quiet within {args.wait_quiet:.0f} s; measuring anyway")

    torch.set_num_threads(THREADS)
    # Captum's notices that it sets requires_grad on the input / hooks the ReLUs (expected).
    warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
    warnings.filterwarnings("ignore", message=r".*backward hooks on ReLU.*")
    info = machine_info(("captum", "grad-cam"))
    print("machine:", "; ".join(f"{k} {v}" for k, v in info.items()))
    load = load_average()
    busy = load is not None and load[0] >= QUIET_LOAD
    if busy:
        print(f"WARNING: load average {load[0]:.2f} >= {QUIET_LOAD}; the timings will be noisy")

    wanted = set(args.cases or REPS_FULL)
    cases: list[Case] = []
    if wanted & {"resnet50 b1", "resnet50 b16"}:
        cases += [c for c in resnet50_cases() if c.name in wanted]
    if wanted & {"builtin b1", "builtin b16"}:
        cases += [c for c in builtin_cases() if c.name in wanted]
    groups = ([("base", HEADING, TARGET_RATIO)] if args.techniques in ("all", "base") else []) + (
        [("peers", PEERS_HEADING, PEERS_TARGET)] if args.techniques in ("all", "peers") else [])
    command = shlex.join([".venv/bin/python", "bench/attribution.py", *(sys.argv[1:] if argv is None else argv)])
    for group, heading, target in groups:
        status = run_group(cases, group, target, args.quick, args.verbose)
        if status is None:
            return 2
        group_cases, rows = status
        if args.out:
            includes = None if group == "base" else [f"- {attribution_peers.PEERS[n].includes}"
                                                     for n in attribution_peers.names()]
            replace_section(args.out, heading, report(group_cases, rows, info, command, args.quick, busy, target,
                                                      includes))
            print(f"wrote {heading!r} in {args.out}")
    return 0


def run_group(cases: list[Case], group: str, target: float, quick: bool, verbose: bool
              ) -> tuple[list[Case], list[Row]] | None:
    """Check and time one group of techniques ("base": the three by hand; "peers": attribution_peers) on fresh
    copies of the cases; None if an agreement check failed."""
    from dataclasses import replace

    peers = group == "peers"
    reps = (PEERS_REPS_QUICK if quick else PEERS_REPS_FULL) if peers else (REPS_QUICK if quick else REPS_FULL)
    group_cases = [replace(c, checks=[], stats={}) for c in cases]
    try:
        for case in group_cases:
            run_case(case, *reps[case.name], verbose=verbose, peers=peers)
    except Disagreement as e:
        print(f"\nABORT: {e}", file=sys.stderr)
        return None

    rows = rows_of(group_cases, target)
    print("\n" + table(rows))
    misses = [r for r in rows if not r.met]
    if misses:
        print(f"\n{len(misses)} MISS(ES) of the {target}× target: "
              + ", ".join(f"{r.case} {r.technique} {r.ratio:.2f}×" for r in misses))
    else:
        print(f"\nall {len(rows)} rows within {target}× of the faster peer")
    return group_cases, rows


if __name__ == "__main__":
    sys.exit(main())
