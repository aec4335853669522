"""The page list and its groups, from the server's registry (the info API), not from a hand-kept list.

A technique is shown by its family's generic page (:mod:`dashboard.family_view`, or the module of
``app_pages/`` that :data:`FAMILY_PAGES` names) unless its declaration names a special page (``page=`` in
``@technique``, the module of ``app_pages/`` with a layout of its own). A special page module says how it is
listed: ``TITLE``, ``ICON``, optionally ``DEFAULT`` (the landing page) and ``GROUP`` (a family, whose group it
joins, or a group title of its own).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.http import TechniqueInfo
from convlens.schema import ACTIVATIONS, ATTRIBUTION, CORPUS, PREDICTION, SYNTHESIS

PAGES_DIR = Path(__file__).with_name("app_pages")
# The sidebar's group title of each family (a family is not a technique: the registry's FAMILIES).
FAMILY_GROUPS = {PREDICTION: "Why this decision?", ATTRIBUTION: "Why this decision?",
                 ACTIVATIONS: "What did it learn?", SYNTHESIS: "What does it imagine?",
                 CORPUS: "What does it make of a dataset?"}
FAMILY_ICONS = {PREDICTION: ":material/label:", ATTRIBUTION: ":material/target:",
                ACTIVATIONS: ":material/grid_view:", SYNTHESIS: ":material/auto_awesome:",
                CORPUS: ":material/dataset:"}
# The title of a family's generic page when it serves several techniques (one technique: that technique's title).
FAMILY_TITLES = {PREDICTION: "Prediction", ATTRIBUTION: "Attribution", ACTIVATIONS: "More activations",
                 SYNTHESIS: "More synthesis", CORPUS: "More on datasets"}
# A family whose generic page is a module of app_pages/ (every technique of the family side by side).
FAMILY_PAGES = {ATTRIBUTION: "attribution"}  # the module app_pages/attribution.py


@dataclass(frozen=True)
class Entry:
    """One page of the sidebar: a module of ``app_pages/`` or a family's generic page (``family`` set)."""

    title: str
    icon: str
    group: str
    module: str = ""
    family: str = ""
    techniques: tuple[str, ...] = ()
    default: bool = False


def _module_entry(module: str, family: str, names: tuple[str, ...]) -> Entry:
    meta = importlib.import_module(f"dashboard.app_pages.{module}")  # its page() runs only as a script
    group = str(getattr(meta, "GROUP", family))
    return Entry(str(meta.TITLE), str(meta.ICON), FAMILY_GROUPS.get(group, group), module, "", names,
                 bool(getattr(meta, "DEFAULT", False)))


def _family_entry(family: str, names: tuple[str, ...], titles: dict[str, str]) -> Entry:
    if family in FAMILY_PAGES:
        return _module_entry(FAMILY_PAGES[family], family, names)
    title = titles[names[0]] if len(names) == 1 else FAMILY_TITLES.get(family, family.capitalize())
    return Entry(title, FAMILY_ICONS.get(family, ":material/extension:"), FAMILY_GROUPS.get(family, family), "",
                 family, names)


def plan(techniques: Sequence[TechniqueInfo]) -> dict[str, list[Entry]]:
    """Group title → its pages, in the registry's order (a group's landing page first)."""
    titles = {t.name: t.title for t in techniques}
    served: dict[tuple[str, str], list[str]] = {}  # (family, page) → technique names; page "" is the family's
    for t in techniques:
        served.setdefault((t.family, t.page), []).append(t.name)
    entries: list[Entry] = []
    for (family, page), names in served.items():
        entry = _module_entry(page, family, tuple(names)) if page else _family_entry(family, tuple(names), titles)
        same = next((k for k, e in enumerate(entries) if entry.module and e.module == entry.module), None)
        if same is None:
            entries.append(entry)
        else:  # a page serving techniques of several families is listed once, where its first one is
            entries[same] = dataclasses.replace(entries[same], techniques=entries[same].techniques + entry.techniques)
    groups: dict[str, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: not e.default):
        groups.setdefault(entry.group, []).append(entry)
    return groups


def streamlit_pages(groups: dict[str, list[Entry]], family_page: Callable[[str, tuple[str, ...]], None]
                    ) -> dict[str, list[Any]]:
    """``st.navigation``'s argument: every entry as an ``st.Page``."""
    import streamlit as st

    def generic(entry: Entry) -> st.Page:
        def show() -> None:
            family_page(entry.family, entry.techniques)

        return st.Page(show, title=entry.title, icon=entry.icon, url_path=entry.family, default=entry.default)

    return {group: [st.Page(str(PAGES_DIR / f"{e.module}.py"), title=e.title, icon=e.icon, default=e.default)
                    if e.module else generic(e) for e in entries] for group, entries in groups.items()}
