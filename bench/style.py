"""Fast style transfer against Gatys, measured in one run on this machine.

    PYTHONPATH=. python bench/style.py --out docs/benchmarks.md     # full run, every built-in style
    PYTHONPATH=. python bench/style.py --gatys-only                  # fill the Gatys reference file only
    PYTHONPATH=. python bench/style.py --quick                       # smoke run, prints only
    PYTHONPATH=. python bench/style.py --score run.pt                # a training checkpoint's losses, < 1 min

1. Time per image at 256 px: one forward pass of the built-in conditional style network (median of repeated
   runs) against Gatys et al. 2016's optimisation (the ``style`` technique's defaults, ``--gatys-steps`` steps,
   by default 800, where its loss has flattened) on the same content and style; the ratio. The fast pass is
   timed in the same process as, and right before, each Gatys run, so the ratio is of one run under one load.
2. Quality: the style loss (normalised Gram distance over the style layers) and content loss of both results,
   measured on the same perceptual network the network was trained with (random VGG — no pretrained weights),
   and the content itself as a reference. Gatys's result does not depend on the fast network, so each
   (style, steps, size) reference is kept in ``bench/style_gatys.json`` with its loss curve and reused; delete
   an entry (or pass ``--fresh-gatys``) to recompute it.
3. Throughput of ``/predictions/stylize`` with 8 concurrent clients, batching on (the shipped
   ``serve/model-config/stylize.yaml``) and off (batchSize 1); servers run one at a time, one worker each.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import concurrently, machine_info, markdown_table, replace_section  # noqa: E402
from convlens.models import load_model  # noqa: E402
from convlens.techniques.stylize.stylize import (  # noqa: E402
    BUILTIN_CHECKPOINT,
    apply,
    blend_vector,
    checkpoint_styles,
    load_stylenet,
)
from convlens.techniques.synthesis.common import fit  # noqa: E402
from convlens.techniques.synthesis.perceptual import network  # noqa: E402
from convlens.techniques.synthesis.style import StyleParams, losses, style_grams, style_transfer  # noqa: E402
from convlens.training.stylize import load_image, rgb_tensor, write_card  # noqa: E402

HEADING = "## Fast style transfer (bench/style.py)"
PHOTO = ROOT / "dashboard" / "samples" / "photos" / "astronaut.png"
STYLES = ROOT / "dashboard" / "samples" / "styles"
SIZE = 256
CLIENTS = 8
GATYS_FILE = ROOT / "bench" / "style_gatys.json"
HELD_OUT = ("motorcycle",)  # shipped with scikit-image, not in the training content (``content_pool``)


def content_image(name: str) -> torch.Tensor:
    """(3, H, W) content photo: ``astronaut`` (in the training content) or a held-out one of ``HELD_OUT``."""
    if name == "astronaut":
        return load_image(PHOTO)
    if name == "motorcycle":
        from skimage import data

        return rgb_tensor(data.stereo_motorcycle()[0])  # the left view of the stereo pair
    raise ValueError(f"unknown content {name!r}: astronaut or one of {HELD_OUT}")


def fast_result(style: str, reps: int, checkpoint: Path = BUILTIN_CHECKPOINT,
                photo: str = "astronaut") -> tuple[torch.Tensor, float]:
    """The network's result for ``style`` on the photo at ``SIZE`` px and its median forward time."""
    net, names, _ = load_stylenet(checkpoint, "cpu")
    content = fit(content_image(photo), SIZE)
    weights = blend_vector(style, None, names)
    apply(net, [content], weights, 1.0)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        [fast], _, _ = apply(net, [content], weights, 1.0)
        times.append(time.perf_counter() - t0)
    return fast, statistics.median(times)


def gatys_reference(style: str, steps: int, fast_reps: int, photo: str = "astronaut") -> dict[str, Any]:
    """Gatys at ``SIZE`` px for ``steps`` steps: its losses, time, loss curve (every 50 steps) and the decrease
    over its last 100 steps; the fast forward pass timed right before it in this process."""
    _, fast_s = fast_result(style, fast_reps, photo=photo)
    content_img, style_img = content_image(photo), load_image(STYLES / f"{style}.png")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    gatys = style_transfer(load_model("builtin"), {"content": content_img, "style": style_img}, None,
                           StyleParams(size=SIZE, steps=steps, network="random_vgg"))
    gatys_s = time.perf_counter() - t0
    percept = network("random_vgg", "cpu")
    content = fit(content_img, SIZE)
    style_loss, content_loss = losses(percept, gatys.images["result"][None], content,
                                      style_grams(percept, [style_img], [1.0], 1.0, SIZE))
    curve = [v / StyleParams().style_weight for v in gatys.history["style_loss"]]  # the loop's is weighted
    back = max(0, len(curve) - 101)
    return {"style": style, "steps": steps, "size": SIZE, "gatys_s": gatys_s, "fast_s": fast_s,
            "load_1min": load, "gatys_style": float(style_loss[0]), "gatys_content": float(content_loss[0]),
            "curve_every_50": [round(v, 5) for v in curve[::50]],
            "last_100_drop": 1 - curve[-1] / curve[back]}


def gatys_key(style: str, steps: int, photo: str = "astronaut") -> str:
    return f"{style}@{steps}x{SIZE}" + ("" if photo == "astronaut" else f":{photo}")


def gatys_cached(style: str, steps: int, fast_reps: int, fresh: bool, photo: str = "astronaut") -> dict[str, Any]:
    """The stored reference for (style, steps, size, photo), computed and stored when missing or ``fresh``."""
    key = gatys_key(style, steps, photo)
    stored: dict[str, Any] = json.loads(GATYS_FILE.read_text()) if GATYS_FILE.is_file() else {}
    if fresh or key not in stored:
        stored[key] = gatys_reference(style, steps, fast_reps, photo)
        current = json.loads(GATYS_FILE.read_text()) if GATYS_FILE.is_file() else {}  # others may have written
        GATYS_FILE.write_text(json.dumps({**current, key: stored[key]}, indent=1, sort_keys=True) + "\n")
    return dict(stored[key])


def quality_and_time(style: str, gatys_steps: int, fast_reps: int, fresh: bool,
                     checkpoint: Path = BUILTIN_CHECKPOINT, photo: str = "astronaut") -> dict[str, float]:
    ref = gatys_cached(style, gatys_steps, fast_reps, fresh, photo)
    fast, fast_s = fast_result(style, fast_reps, checkpoint, photo)
    percept = network("random_vgg", "cpu")
    content = fit(content_image(photo), SIZE)
    targets = style_grams(percept, [load_image(STYLES / f"{style}.png")], [1.0], 1.0, SIZE)
    style_loss, content_loss = losses(percept, torch.cat([fast, content]), content, targets)
    return {"fast_s": fast_s, "ref_fast_s": ref["fast_s"], "gatys_s": ref["gatys_s"],
            "gatys_steps": float(gatys_steps), "gatys_drop": ref["last_100_drop"], "gatys_load": ref["load_1min"],
            "fast_style": float(style_loss[0]), "gatys_style": ref["gatys_style"],
            "content_style": float(style_loss[1]), "fast_content": float(content_loss[0]),
            "gatys_content": ref["gatys_content"]}


def score(checkpoint: Path, styles: list[str], gatys_steps: int, held_out: list[str]) -> int:
    """Print the quality columns of ``checkpoint`` (a training's checkpoint: it may have other style names than
    the built-in network, so ``styles`` must be its styles) against the stored Gatys references — the astronaut's
    and those of the ``held_out`` photos already stored (``--gatys-only`` stores them); < 1 min each."""
    stored = json.loads(GATYS_FILE.read_text()) if GATYS_FILE.is_file() else {}
    for photo in ["astronaut", *held_out]:
        ratios = []
        for style in styles:
            if gatys_key(style, gatys_steps, photo) not in stored:
                print(f"{photo}/{style}: no stored Gatys reference (bench/style.py --gatys-only)", flush=True)
                continue
            m = quality_and_time(style, gatys_steps, 1, False, checkpoint, photo)
            ratios.append(m["fast_style"] / m["gatys_style"])
            print(f"{photo:10s} {style:22s} style fast {m['fast_style']:.4f} Gatys {m['gatys_style']:.4f} "
                  f"ratio {ratios[-1]:.2f}x  content fast {m['fast_content']:.3f} Gatys {m['gatys_content']:.3f}",
                  flush=True)
        if ratios:
            print(f"{photo}: worst ratio {max(ratios):.2f}x", flush=True)
    return 0


def pass_costs(style: str, reps: int, sizes: tuple[int, ...] = (1, 8)) -> dict[int, float]:
    """{n: ms per image of one forward pass over n photos at ``SIZE`` px} — the cost ``forward_chunk`` avoids."""
    net, names, _ = load_stylenet(BUILTIN_CHECKPOINT, "cpu")
    x = fit(load_image(PHOTO), SIZE)  # (1, 3, S, S)
    weights = blend_vector(style, None, names)
    out = {}
    for n in sizes:
        batch = x.expand(n, -1, -1, -1).contiguous()
        times = []
        with torch.no_grad():
            for _ in range(max(2, reps // 3)):
                t0 = time.perf_counter()
                net(batch, weights)
                times.append(time.perf_counter() - t0)
        out[n] = 1e3 * min(times[1:]) / n
    return out


def throughput(info: Any, per_client: int) -> dict[str, float]:
    import requests

    body: dict[str, Any] = {"content": base64.b64encode(PHOTO.read_bytes()).decode(),
                            "params": {"style": "hubble", "size": SIZE}}
    url = f"{info.inference_url}/predictions/stylize"
    headers = {"Authorization": f"Bearer {info.token}"}
    sessions = [requests.Session() for _ in range(CLIENTS)]
    for s in sessions:  # connections open, worker warm
        s.post(url, json=body, headers=headers, timeout=120).raise_for_status()
    batches: list[float] = []
    lock = threading.Lock()

    def client(s: Any) -> None:
        for _ in range(per_client):
            r = s.post(url, json=body, headers=headers, timeout=120)
            r.raise_for_status()
            with lock:
                batches.append(r.json()["scalars"]["batch"])

    wall = concurrently([lambda s=s: client(s) for s in sessions])
    return {"rps": CLIENTS * per_client / wall, "mean_batch": statistics.mean(batches), "n": float(len(batches))}


def serving(per_client: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    from serve import server

    out: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    configs = {"on": {}, "off": {"batchSize": 1}}
    with tempfile.TemporaryDirectory(prefix="convlens-style-bench-") as tmp:
        for name, overrides in configs.items():
            run_dir = Path(tmp) / name
            print(f"starting TorchServe (stylize only), batching {name} ...", flush=True)
            info = server.start(run_dir, server.Ports.free(), endpoints=("stylize",),
                                model_config={"stylize": overrides}, timeout=300)
            try:
                assert info.healthy, info.detail
                for r in range(rounds):
                    result = throughput(info, per_client)
                    print(f"  round {r + 1}: {result['rps']:.2f} req/s, mean batch {result['mean_batch']:.2f}",
                          flush=True)
                    out[name].append(result)
            finally:
                server.stop(run_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="markdown file to write the section into (e.g. docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--styles", nargs="+", default=list(checkpoint_styles(BUILTIN_CHECKPOINT)),
                        help="default: every style of the built-in network")
    parser.add_argument("--gatys-steps", type=int, default=800)
    parser.add_argument("--gatys-only", action="store_true", help="only fill bench/style_gatys.json")
    parser.add_argument("--fresh-gatys", action="store_true", help="recompute the stored Gatys references")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-serving", action="store_true")
    parser.add_argument("--held-out", nargs="*", default=list(HELD_OUT), metavar="PHOTO",
                        help=f"content photos outside the training data, scored too (default: {' '.join(HELD_OUT)}; "
                             "none: no value)")
    parser.add_argument("--score", metavar="CHECKPOINT", help="only score this network against the stored Gatys "
                                                              "references (style and content losses; no timing)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps, reps, per_client, rounds = (5, 3, 2, 1) if args.quick else (args.gatys_steps, 10, 8, 2)
    if args.score:
        return score(Path(args.score), args.styles, steps, args.held_out)
    if args.gatys_only:
        for photo in ["astronaut", *args.held_out]:
            for style in args.styles:
                print(json.dumps(gatys_cached(style, steps, reps, args.fresh_gatys, photo)), flush=True)
        return 0
    machine = machine_info(("torchserve",))
    rows, qrows, verdicts = [], [], []
    evaluation: dict[str, dict[str, float]] = {}
    for style in args.styles:
        print(f"{style}: fast x{reps} and Gatys {steps} steps at {SIZE} px ...", flush=True)
        m = quality_and_time(style, steps, reps, args.fresh_gatys or args.quick)
        print(f"  {m}", flush=True)
        evaluation[style] = {k: round(m[k], 5) for k in ("fast_style", "gatys_style", "fast_content", "gatys_content")}
        speedup = m["gatys_s"] / m["fast_s"]
        rows.append([style, f"{m['fast_s'] * 1e3:.0f} ms", f"{m['gatys_s']:.1f} s ({steps} steps)", f"{speedup:.0f}×",
                     f"{m['gatys_load']:.1f}", f"{100 * m['gatys_drop']:.1f} %", f"{m['ref_fast_s'] * 1e3:.0f} ms"])
        qrows.append([style, f"{m['fast_style']:.4f}", f"{m['gatys_style']:.4f}",
                      f"{m['fast_style'] / m['gatys_style']:.2f}×", f"{m['content_style']:.3f}",
                      f"{m['fast_content']:.3f}", f"{m['gatys_content']:.3f}"])
        verdicts.append(f"{style}: {speedup:.0f}× faster ({'meets' if speedup >= 100 else 'misses'} ≥ 100×), "
                        "style loss "
                        f"{m['fast_style'] / m['gatys_style']:.2f}× Gatys's "
                        f"({'meets' if m['fast_style'] <= 2 * m['gatys_style'] else 'misses'} ≤ 2×), "
                        f"{m['content_style'] / m['fast_style']:.0f}× below the content's own")
    held_rows = []
    for photo in args.held_out:
        for style in args.styles:
            print(f"held-out {photo}: {style} ...", flush=True)
            m = quality_and_time(style, steps, 1, args.fresh_gatys or args.quick, photo=photo)
            held_rows.append([photo, style, f"{m['fast_style']:.4f}", f"{m['gatys_style']:.4f}",
                              f"{m['fast_style'] / m['gatys_style']:.2f}×", f"{m['fast_content']:.3f}",
                              f"{m['gatys_content']:.3f}"])
    tput = None if args.no_serving else serving(per_client, rounds)
    passes = pass_costs(args.styles[0], reps)
    body = [
        "Content: scikit-image's astronaut (`dashboard/samples/photos/astronaut.png`) at 256 px on the longer side; "
        f"styles from `dashboard/samples/styles/`. Network: the committed `convlens/builtin/stylize.pt` "
        f"(see `stylize.card.md`). CPU, torch threads {args.threads}; machine: "
        + "; ".join(f"{k}: {v}" for k, v in machine.items()) + ".",
        "", "### Time per image at 256 px (fast: median forward pass; Gatys: the whole optimisation)", "",
        "Fast: the committed network, timed in this run. Gatys: the stored reference run "
        "(`bench/style_gatys.json`), which also timed the network committed then right before it in the same "
        "process (last column; the loads of both runs are given).", "",
        markdown_table(["style", "fast", "Gatys", "Gatys / fast", "1-min load during Gatys",
                        "Gatys style-loss drop over its last 100 steps", "fast in the Gatys run"], rows), "",
        "On a GPU both shrink (on paper: the fast net is a few ms, Gatys a few seconds at 256 px on VGG-19); "
        "the ratio is of the same order, since both are dominated by convolutions.",
        "", "### Quality: losses measured on the random VGG the network was trained with", "",
        markdown_table(["style", "style loss, fast", "style loss, Gatys", "fast / Gatys",
                        "style loss of the content itself", "content loss, fast", "content loss, Gatys"], qrows),
        "", "Style loss: Gram distance normalised by the target's norm, averaged over relu1_1…relu4_1; content "
        "loss: relu3_2 feature distance normalised by the content's. Target: fast within 2× of Gatys. Gatys ran "
        f"{steps} steps (the loss curves are in `bench/style_gatys.json`); where its loss still falls, a longer run "
        "would lower it further, so a fast/Gatys ratio here is a lower bound on the ratio to a fully converged "
        "result. The 'content itself' column shows how far each style is from an unstyled photo: a grey, "
        "low-contrast texture (brick) has a Gram matrix ~100× smaller than a photo's, so matching it is a pure "
        "second-order texture match, the hardest case for a small feed-forward network.",
        "", "Verdicts: " + "; ".join(verdicts) + ".",
    ]
    if held_rows:
        body += ["", "### Quality on held-out content", "",
                 "The astronaut is one of the training content photos; these are not (`HELD_OUT`: shipped with "
                 f"scikit-image, left out of `content_pool`), Gatys {steps} steps on each too.", "",
                 markdown_table(["photo", "style", "style loss, fast", "style loss, Gatys", "fast / Gatys",
                                 "content loss, fast", "content loss, Gatys"], held_rows)]
    if tput is not None:
        trows = []
        for name in ("on", "off"):
            rps = statistics.median(r["rps"] for r in tput[name])
            batch = statistics.mean(r["mean_batch"] for r in tput[name])
            trows.append([f"batching {name}", f"{rps:.2f}", f"{batch:.2f}"])
        body += ["", f"### /predictions/stylize throughput, {CLIENTS} concurrent clients ({per_client} requests "
                     f"each, {SIZE} px, median of {rounds} rounds)", "",
                 markdown_table(["server", "requests/s", "mean batch"], trows), "",
                 "Batching on: `serve/model-config/stylize.yaml` (batchSize 8, maxBatchDelay 50 ms); off: batchSize 1. "
                 "TorchServe hands the handler up to 8 requests at once; on a CPU the network then runs them one "
                 "per forward pass (`stylize.forward_chunk`), because one pass over a batch costs more per image "
                 f"than single passes (measured in this run, torch threads {args.threads}, {SIZE} px: "
                 + ", ".join(f"{ms:.0f} ms per image in a pass of {n}" for n, ms in passes.items())
                 + "; the activations of a batch no longer fit the cache). So on a CPU batching saves only "
                 "per-request overhead and costs up to maxBatchDelay of waiting; on an accelerator the whole "
                 "batch is one pass, where batching pays."]
    text = "\n".join(body)
    print(text)
    if args.out and not args.quick:
        replace_section(Path(args.out), HEADING, text)
        how = (f"`bench/style.py`: astronaut at {SIZE} px, Gatys {steps} steps with the `style` technique's "
               "defaults, losses on the random VGG")
        write_card(BUILTIN_CHECKPOINT, torch.load(BUILTIN_CHECKPOINT, map_location="cpu", weights_only=True),
                   {"how": how, "styles": evaluation})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
