"""A result told in words through its technique's declared outputs: what ``convlens run`` and ``convlens call``
print beside their JSON. Torch-free (the API's command line imports it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convlens.outputs import Declared, Outputs, Section, caption


def result_lines(declared: Outputs, images: Mapping[str, str], scalars: Mapping[str, float],
                 labels: Mapping[str, str]) -> list[str]:
    """One line per written image (its declared name, its file, its caption), per scalar (its value with its
    unit) and per label, in declared order; a key the declaration does not know (an older server) comes last,
    bare."""
    values: dict[str, Any] = {**scalars, **labels}
    lines = []
    shown_sections: tuple[tuple[Section, Mapping[str, Any]], ...] = (
        ("images", images), ("scalars", scalars), ("labels", labels))
    for section, present in shown_sections:
        for key, declaration, placeholders in _in_declared_order(declared, section, present):
            about = caption(declaration, values, placeholders) if declaration is not None else ""
            unit = declaration.unit if declaration is not None else ""
            shown = _number(present[key], unit) if section == "scalars" else str(present[key])
            lines.append(f"{key:<22} {shown:<30} {about}".rstrip())
    return lines


def _in_declared_order(declared: Outputs, section: Section, present: Mapping[str, Any]
                       ) -> list[tuple[str, Declared | None, dict[str, str]]]:
    ordered: list[tuple[str, Declared | None, dict[str, str]]] = list(declared.in_order(section, present))
    seen = {key for key, _, _ in ordered}
    return ordered + [(key, None, {}) for key in present if key not in seen]


def _number(value: float, unit: str) -> str:
    """The value and its unit: ``3.2 s``, ``12 px``, ``45%``."""
    text = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"
