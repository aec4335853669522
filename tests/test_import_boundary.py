"""Arrows point one way: the core imports no UI, server, HTTP or sibling package, at any depth.

The source is parsed (AST), so a function-level import is caught as surely as a top-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {"dashboard", "serve", "handlers", "client", "streamlit", "ts", "requests", "urllib3",
                     "flask", "fastapi", "httpx", "plotly"}


def imported_roots(path: Path) -> list[tuple[str, int]]:
    """Top-level package of every import statement in a file, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((str(node.args[0].value).split(".")[0], node.lineno))
    return found


def offenders(folder: str, forbidden: set[str]) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {name}"
            for p in sorted((ROOT / folder).rglob("*.py")) for name, line in imported_roots(p) if name in forbidden]


def test_the_scan_sees_function_level_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from dashboard.client import X\n    import importlib\n"
                      "    importlib.import_module('serve.server')\n")
    assert [name for name, _ in imported_roots(sample)] == ["dashboard", "importlib", "serve"]


def test_core_imports_no_ui_server_or_http_package() -> None:
    assert offenders("convlens", FORBIDDEN_IN_CORE) == []


def test_client_and_dashboard_import_neither_torch_nor_the_technique_code() -> None:
    # numpy is allowed: Streamlit itself requires it, so the dashboard image has it whatever the dashboard imports
    # (the Embedding page filters and the client decodes a million-row column with it).
    from importlib.metadata import requires

    assert any(r.split(">")[0].split("<")[0].split("=")[0].strip() == "numpy" for r in requires("streamlit") or [])
    heavy = {"torch", "torchvision", "ts", "handlers", "serve"}
    assert offenders("client", heavy - {"serve"}) == []  # `convlens serve` starts the server: serve is allowed
    assert offenders("dashboard", heavy) == []
    # decoding: Pillow only; colormaps: the colour maps' anchors (the dashboard's colour bars)
    allowed_core = {"convlens.schema", "convlens.outputs", "convlens.decoding", "convlens.colormaps"}
    core_uses = [f"{p.relative_to(ROOT)}: {node.module}" for folder in ("client", "dashboard")
                 for p in (ROOT / folder).rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("convlens")
                 and node.module not in allowed_core and not p.name == "cli.py"]
    assert core_uses == []


def test_schema_imports_no_torch() -> None:
    code = "import sys, convlens.schema, convlens.outputs; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_decoding_core_imports_neither_torch_nor_numpy() -> None:
    code = "import sys, convlens.decoding; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_api_commands_answer_without_importing_torch(tmp_path: Path) -> None:
    """`convlens call` and `convlens serve status` do not pay torch's import (≈ 4 s) before their request."""
    code = ("import sys\nfrom client.cli import main\n"
            f"code = main(['serve', 'status', '--run-dir', {str(tmp_path)!r}])\n"
            "main(['call', '--list', '--url', 'http://127.0.0.1:9', '--timeout', '1'])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH 3", out.stdout + out.stderr
    assert "unreachable" in out.stderr
