"""What the registry imports at start-up (every module under ``convlens/techniques/``) is technique code only: a
server worker loads no training code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_discovering_the_techniques_imports_no_training_code() -> None:
    code = ("import sys\nfrom convlens import registry\nregistry.registry()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('convlens.techniques.', 'convlens.training'))\n"
            "             and 'train' in m))\n"
            "print(sorted(m for m in sys.modules if m.startswith('convlens.techniques.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    training, discovered = out.stdout.splitlines()
    assert training == "[]"
    assert "convlens.techniques.stylize.stylize" in discovered  # the scan did run
