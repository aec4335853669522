"""The dashboard names no technique or endpoint in its code: pages come from the registry (the info API) and a
special page finds its techniques by its own module name (``Spec.page``). Pages set no import path of their own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from convlens import registry
from dashboard import navigation

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
FILES = sorted(DASHBOARD.rglob("*.py"))
PARAM_NAMES = {p["name"] for spec in registry.registry().values() for p in spec.describe()["params"]}
# A family (a sidebar group's key) may share a technique's name; a params field ("dataset") an endpoint's.
NAMES = (set(registry.registry()) | (set(registry.all_endpoints()) - PARAM_NAMES)) - set(registry.FAMILIES)


def literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are code, not docstrings or ``__all__``."""
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                                           ast.Constant):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            skipped |= {id(c) for c in ast.walk(node.value)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skipped]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(DASHBOARD)) for p in FILES])
def test_no_technique_or_endpoint_name_is_a_literal(path: Path) -> None:
    found = [(line, text) for line, text in literals(ast.parse(path.read_text())) if text in NAMES]
    assert not found, f"{path.name} names techniques or endpoints: {found}"


@pytest.mark.parametrize("path", sorted((DASHBOARD / "app_pages").glob("[a-z]*.py")), ids=lambda p: p.stem)
def test_a_page_sets_no_import_path_and_imports_without_running(path: Path) -> None:
    assert "sys.path" not in path.read_text()
    module = importlib.import_module(f"dashboard.app_pages.{path.stem}")  # page() runs only as a script
    assert module.TITLE and module.ICON.startswith(":material/")


def test_every_declared_page_exists() -> None:
    pages = {spec.page for spec in registry.registry().values() if spec.page}
    modules = {p.stem for p in (DASHBOARD / "app_pages").glob("[a-z]*.py")}
    assert pages <= modules and modules - set(navigation.FAMILY_PAGES.values()) <= pages
