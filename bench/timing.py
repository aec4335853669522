"""Shared helpers for the benchmarks in ``bench/``: machine description, interleaved
(round-robin) timing, and writing one section of ``docs/benchmarks.md``.

Usage in a benchmark script run as ``python bench/<name>.py``::

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.timing import interleaved, machine_info, replace_section
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import re
import socket
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

# ----------------------------------------------------------------------------- machine


def free_port() -> int:
    """A currently free loopback port (for a server a benchmark starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, str]:
    """What a benchmark result depends on, as printable strings."""
    info = {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical, torch threads {torch.get_num_threads()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for pkg in packages:
        info[pkg] = package_version(pkg)
    load = load_average()
    if load is not None:
        info["load average at start"] = ", ".join(f"{v:.2f}" for v in load)
    return info


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 15.0, log: Callable[[str], None] = print) -> bool:
    """Block until the 1-minute load average is below ``max_load`` (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        load = load_average()
        if load is None or load[0] < max_load:
            return True
        if time.monotonic() >= deadline:
            return False
        log(f"  load average {load[0]:.2f} >= {max_load}; waiting...")
        time.sleep(poll_s)


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Stats:
    """Summary of the per-call wall-clock times of one method, in seconds."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def q1(self) -> float:
        return _quantile(self.times, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.times, 0.75)

    @property
    def n(self) -> int:
        return len(self.times)


def _quantile(values: tuple[float, ...], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call; its result is dropped before returning.

    A full garbage collection runs before (untimed) so one method's garbage is not
    collected on another's clock; the collector is paused during the call.
    """
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    del out
    return elapsed


@dataclass(frozen=True)
class Method:
    """A timed call with optional untimed ``setup`` before and ``teardown`` after each call.

    E.g. a peer library that keeps hooks on the model between calls gets them
    registered in ``setup`` and removed in ``teardown``, so they are not active (and
    not accumulating state) while the other methods run.
    """

    call: Callable[[], object]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None

    def run_once(self, timed: bool) -> float:
        if self.setup is not None:
            self.setup()
        try:
            if timed:
                return time_call(self.call)
            self.call()
            return 0.0
        finally:
            if self.teardown is not None:
                self.teardown()


def interleaved(
    methods: Mapping[str, Callable[[], object] | Method],
    reps: int,
    warmup: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict[str, Stats]:
    """Time every method ``reps`` times, round-robin, after ``warmup`` untimed rounds.

    Each round calls every method once; the starting method rotates from round to
    round, so no method is always the one that runs after a particular other (caches,
    allocator state, CPU frequency drift are spread evenly).
    """
    ms = {name: m if isinstance(m, Method) else Method(m) for name, m in methods.items()}
    names = list(ms)
    for _ in range(warmup):
        for name in names:
            ms[name].run_once(timed=False)
    times: dict[str, list[float]] = {name: [] for name in names}
    # Everything alive now (the modules of torch & co., the models) goes to the permanent
    # generation: the per-call gc.collect() then scans only new objects (~µs instead of
    # ~250 ms for the ~500k objects of a torch + torchvision + captum process).
    gc.collect()
    gc.freeze()
    try:
        for r in range(reps):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                times[name].append(ms[name].run_once(timed=True))
            if log is not None:
                log(f"    round {r + 1}/{reps}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.1f}" for n in names) + " ms")
    finally:
        gc.unfreeze()
    return {name: Stats(tuple(ts)) for name, ts in times.items()}


def concurrently(workers: list[Callable[[], object]]) -> float:
    """Start every worker in its own thread, release them together, and return the wall seconds until the last
    one ends (thread start-up not counted)."""
    import threading

    barrier = threading.Barrier(len(workers) + 1)

    def run(work: Callable[[], object]) -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def fmt_ms(seconds: float) -> str:
    """Milliseconds with about three significant digits."""
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


# ----------------------------------------------------------------------------- report


def replace_section(path: Path, heading: str, body: str, title: str = "# Benchmarks") -> None:
    """Write ``heading`` + ``body`` into the markdown file, replacing only that section.

    A section runs from its ``## `` heading line to the next ``## `` heading (or the
    end of the file). Other sections are kept as they are; a missing section is
    appended; a missing file is created with ``title``.
    """
    section = f"{heading.rstrip()}\n\n{body.strip()}\n"
    text = path.read_text() if path.exists() else f"{title}\n"
    lines = text.splitlines(keepends=True)
    # Headings inside ``` fences are not headings.
    fenced, in_fence = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        fenced.append(in_fence)
    headings = [i for i, line in enumerate(lines) if not fenced[i] and re.match(r"^## ", line)]
    start = next((i for i in headings if lines[i].rstrip() == heading.rstrip()), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((j for j in headings if j > start), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one of 'l'/'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
