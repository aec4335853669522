"""The package's docstring names only what exists: a newcomer following it finds every module and function."""

from __future__ import annotations

import importlib
import re

import pytest

import convlens

REFERENCE = re.compile(r":(?:func|mod|class):`([a-z_.]+)`")


@pytest.mark.parametrize("name", REFERENCE.findall(convlens.__doc__ or ""))
def test_every_name_in_the_package_docstring_exists(name: str) -> None:
    assert _resolve(name) is not None, f"convlens/__init__.py names {name}, which does not exist"


def _resolve(name: str) -> object:
    """The module ``name``, or the attribute its last part names of the module before it; None if neither."""
    module, _, attribute = name.rpartition(".")
    for candidate, attr in ((name, ""), (module, attribute)):
        try:
            found = importlib.import_module(candidate)
        except ModuleNotFoundError:
            continue
        return getattr(found, attr, None) if attr else found
    return None


def test_a_stale_name_is_caught() -> None:
    assert _resolve("convlens.explain.explain") is None and _resolve("convlens.pipeline.run") is not None
