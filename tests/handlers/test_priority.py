"""Long-job endpoints yield the CPU to quick ones (handlers/priority.py). Each case runs in a child process:
a nice value cannot be taken back by an unprivileged process, and must not leak into the test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Builds the endpoint's handler with its shipped handler config (no preload) and reports what it got.
PROBE = """
import json, os, sys, threading, torch, yaml
from handlers.prediction import PredictionHandler as ClassifyHandler
from handlers.synthesis import SynthesisHandler
from tests.handlers.conftest import make_context
endpoint, handler_class, config_file = sys.argv[1], sys.argv[2], sys.argv[3]
config = yaml.safe_load(open(config_file))["handler"]
config.update(preload=[], warm_umap=False)
handler = {"classify": ClassifyHandler, "synthesis": SynthesisHandler}[handler_class]()
handler.initialize(make_context(endpoint, handler_config=config))
from handlers.priority import describe
later = {}
thread = threading.Thread(target=lambda: later.update(priority=describe()))
thread.start(); thread.join()
print(json.dumps({"priority": describe(), "threads": torch.get_num_threads(), "later_thread": later["priority"]}))
"""


def probe(endpoint: str, handler_class: str, config: str, **env: str) -> dict[str, Any]:
    config_file = str(ROOT / "serve/model-config" / config)
    out = subprocess.run([sys.executable, "-c", PROBE, endpoint, handler_class, config_file], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def unchanged() -> str:
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def nice(n: int) -> str:
    return f"nice {max(os.getpriority(os.PRIO_PROCESS, 0), n)}"


@pytest.mark.parametrize("config", ["synthesis.yaml", "corpus.yaml", "dataset.yaml"])
def test_long_job_families_are_marked_in_their_model_config(config: str) -> None:
    assert yaml.safe_load((ROOT / "serve/model-config" / config).read_text())["handler"]["long_jobs"] is True


@pytest.mark.parametrize("config", ["classify.yaml", "attribution.yaml", "activations.yaml", "stylize.yaml"])
def test_quick_endpoints_are_not_marked(config: str) -> None:
    assert not yaml.safe_load((ROOT / "serve/model-config" / config).read_text())["handler"].get("long_jobs")


def test_a_synthesis_worker_runs_at_lower_priority_with_one_torch_thread() -> None:
    got = probe("classviz", "synthesis", "synthesis.yaml", CONVLENS_LONG_JOB_PRIORITY="", CONVLENS_LONG_JOB_THREADS="")
    assert got == {"priority": nice(10), "later_thread": nice(10), "threads": 1}  # later threads inherit it


def test_the_classify_worker_keeps_full_priority_and_threads() -> None:
    got = probe("classify", "classify", "classify.yaml")
    assert got == {"priority": unchanged(), "later_thread": unchanged(), "threads": subprocess_default_threads()}


def test_the_environment_tunes_or_switches_off_the_long_job_priority() -> None:
    got = probe("classviz", "synthesis", "synthesis.yaml", CONVLENS_LONG_JOB_PRIORITY="idle",
                CONVLENS_LONG_JOB_THREADS="2")
    assert (got["priority"], got["threads"]) == ("idle", 2)
    got = probe("classviz", "synthesis", "synthesis.yaml", CONVLENS_LONG_JOB_PRIORITY="normal",
                CONVLENS_LONG_JOB_THREADS="0")
    assert (got["priority"], got["threads"]) == (unchanged(), subprocess_default_threads())


def subprocess_default_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True,
                         text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_a_background_thread_lowers_only_itself() -> None:
    code = """
import json, os, threading
from handlers import priority
seen = {}
def work():
    seen["returned"] = priority.lower_current_thread()
    seen["job"] = priority.describe()
thread = threading.Thread(target=work); thread.start(); thread.join()
print(json.dumps({**seen, "main": priority.describe()}))
"""
    for level, expected in (("idle", "idle"), ("low", nice(10))):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "CONVLENS_LONG_JOB_PRIORITY": level},
                             check=True)
        assert json.loads(out.stdout) == {"returned": expected, "job": expected, "main": unchanged()}
