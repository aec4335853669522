"""What a CPU benchmark figure holds for: the CPU's capability, its bfloat16 support, the caps in force and the
oneDNN kernels PyTorch actually picks for a float32 and a bfloat16 convolution.

    .venv/bin/python bench/cpu_kernels.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def conv_kernel(dtype: torch.dtype) -> str:
    """The oneDNN implementation name (e.g. ``brg_conv_fwd:avx2``) of a 3×3 channels-last convolution."""
    x = torch.randn(2, 64, 14, 14, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)  # oneDNN's verbose log goes to the C stdout
        try:
            with torch.inference_mode(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(x, w, padding=1)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    for line in lines:
        fields = line.split(",")
        if "exec" in fields and "convolution" in fields:
            return fields[fields.index("convolution") + 1]
    return "not oneDNN"


def report() -> dict[str, str]:
    from convlens.techniques.attribution.occlusion import fast_reduced_dtype, reduced_dtype

    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    cpu = torch.device("cpu")
    return {
        "ATen capability": torch.backends.cpu.get_cpu_capability(),
        "bfloat16 reported": "yes" if bf16 else "no",
        "caps": ", ".join(f"{k}={os.environ[k]}" for k in CAPS if k in os.environ) or "none",
        "fp32 conv kernel": conv_kernel(torch.float32),
        "bf16 conv kernel": conv_kernel(torch.bfloat16),
        "precision=reduced runs": str(fast_reduced_dtype(cpu)).removeprefix("torch.")
        + ("" if fast_reduced_dtype(cpu) == reduced_dtype(cpu) else " (bfloat16 measured slower here)"),
    }


def line() -> str:
    return "; ".join(f"{k}: {v}" for k, v in report().items())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(line())
