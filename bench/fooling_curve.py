"""A model's robustness curve for the Fooling page: each of ``--n`` held-out images attacked towards a seeded random
other class than its true one within each of ``--budgets`` (/255) and 100 steps (``robustness.measure_curve``); each
image's smallest fooling change found is kept beside the weights (``convlens.techniques.synthesis.robustness``).

    .venv/bin/python bench/fooling_curve.py --model builtin --n 100 --budgets 8 16 32   # about 3.5 min, one thread
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from convlens.models import LoadedModel, load_model  # noqa: E402
from convlens.techniques.synthesis import robustness  # noqa: E402

TARGETS = "a seeded random other class than the true one"
STEPS = 100


def held_out(loaded: LoadedModel, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, S, S) held-out pictures in [0, 1] and their labels."""
    if loaded.name == "digits":
        from bench.digits_card import held_out as digits_held_out

        x, y = digits_held_out()
        return x[:n], y[:n]
    from convlens.builtin.dataset import HELDOUT_SEED, render_batch

    batch, _, labels = render_batch(HELDOUT_SEED, n, loaded.preprocessing.input_size)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255, torch.as_tensor(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--budgets", type=float, nargs="+", default=[8.0, 16.0, 32.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    start = time.perf_counter()
    x, y = held_out(loaded, args.n)
    found = robustness.measure_curve(loaded, x.expand(-1, 3, -1, -1), y.tolist(), args.budgets, STEPS,
                                     progress=lambda i, n, _: print(f"{i}/{n}", file=sys.stderr, end="\r"))
    largest = max(args.budgets)
    path = robustness.write_curve(loaded, found, largest, TARGETS, STEPS)
    curve = robustness.measured_curve(loaded)
    assert curve is not None
    print(f"{path}: {time.perf_counter() - start:.0f} s; fooled within " +
          ", ".join(f"{b:g}/255: {curve.at(b):.0%}" for b in (2, 4, 6, 8, 10, 12, 16, 24, largest)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
