"""Run pytest as if on a CPU of another capability, so a kernel-dependent tolerance fails on every machine.

PyTorch picks its kernels in three places, each by the CPU's instruction set: ATen's own kernels
(``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix products
(``MKL_ENABLE_INSTRUCTIONS``). Capping only the first does not reproduce another CPU: on an AVX-512 machine
oneDNN still runs its AVX-512/AMX convolutions. A profile caps all three at one level.

    python -m tests.kernels --list
    python -m tests.kernels --profile avx2 -- -q tests/core
    python -m tests.kernels --others -- -q tests/core      # every profile this CPU has, except its own
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

PROFILES: dict[str, dict[str, str]] = {
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}
ORDER = list(PROFILES)


def native() -> str:
    """This CPU's own ATen capability as a profile name ("default", "avx2" or "avx512")."""
    clean = {k: v for k, v in os.environ.items() if k not in PROFILES["default"]}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env=clean, capture_output=True, text=True, check=True).stdout.strip().lower()
    return out if out in PROFILES else "default"


def supported() -> list[str]:
    """The profiles this CPU can run: every level up to its own."""
    return ORDER[: ORDER.index(native()) + 1]


def run(profile: str, pytest_args: list[str]) -> int:
    env = {**os.environ, **PROFILES[profile]}
    print(f"== pytest under CPU profile {profile}: " + " ".join(f"{k}={v}" for k, v in PROFILES[profile].items()),
          flush=True)
    return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=ORDER, action="append", default=[])
    parser.add_argument("--others", action="store_true", help="every supported profile except the native one")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    own = native()
    if args.list:
        print(f"native: {own}; supported: {', '.join(supported())}")
        return 0
    profiles = list(args.profile) + ([p for p in supported() if p != own] if args.others else [])
    if not profiles:
        parser.error("name a --profile or --others")
    unsupported = [p for p in profiles if p not in supported()]
    if unsupported:
        parser.error(f"this CPU ({own}) cannot run profile(s) {', '.join(unsupported)}")
    codes = [run(p, args.pytest_args) for p in profiles]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
