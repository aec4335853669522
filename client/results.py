"""A technique's answer read through its declared outputs (``TechniqueInfo.outputs``), not through string keys.

    result = Result(response, info.outputs)
    for shown in result.images():            # declared order, patterns expanded, captions filled
        st.image(shown.data, caption=shown.caption)
    result.scalar("psnr")                    # UndeclaredOutput if the technique declares no such scalar

Torch-free (the dashboard imports it); ``response`` is any of ``convlens.schema``'s family responses.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from convlens.outputs import COLUMN_DTYPES, Declared, Outputs, Role, Section, caption


class UndeclaredOutput(KeyError):
    """A page asked for an output its technique does not declare: a bug in the page, named clearly."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Shown:
    """One present output: its key in the response, its declaration, the filled caption and its value."""

    key: str
    declared: Declared
    caption: str
    value: Any
    placeholders: Mapping[str, str]


@dataclass(frozen=True)
class Result:
    """A response and the outputs its technique declares."""

    response: Any
    outputs: Outputs

    def _section(self, section: Section) -> Mapping[str, Any]:
        if section == "items":
            return {}
        return getattr(self.response, section, None) or {}

    def _declared(self, section: Section, decl: Declared | str) -> Declared:
        name = decl.name if isinstance(decl, Declared) else decl
        try:
            return self.outputs.get(section, name)
        except KeyError as exc:
            raise UndeclaredOutput(f"{getattr(self.response, 'technique', 'this technique')}: {exc.args[0]}") \
                from None

    def values(self) -> dict[str, Any]:
        """The scalars and labels a caption is filled from."""
        return {**self._section("scalars"), **self._section("labels")}

    def get(self, section: Section, decl: Declared | str, default: Any = None) -> Any:
        """The value of a declared (non-pattern) output, or ``default`` when this run did not produce it."""
        declared = self._declared(section, decl)
        return self._section(section).get(declared.name, default)

    def has(self, section: Section, decl: Declared | str) -> bool:
        return self._declared(section, decl).name in self._section(section)

    def image(self, decl: Declared | str) -> str:
        """A declared image (base64 PNG); KeyError naming it when absent from this result."""
        declared = self._declared("images", decl)
        return str(self._section("images")[declared.name])

    def scalar(self, decl: Declared | str, default: float | None = None) -> float:
        value = self.get("scalars", decl, default)
        if value is None:
            raise KeyError(f"this result holds no scalar {decl if isinstance(decl, str) else decl.name!r}")
        return float(value)

    def label(self, decl: Declared | str, default: str = "") -> str:
        return str(self.get("labels", decl, default))

    def column(self, decl: Declared | str) -> np.ndarray:
        """A declared column as a read-only array of its declared type (decoded from base64, no copy made);
        KeyError naming it when absent from this result."""
        declared = self._declared("columns", decl)
        text = self._section("columns").get(declared.name)
        if text is None:
            raise KeyError(f"this result holds no column {declared.name!r}")
        return np.frombuffer(base64.b64decode(text), dtype=COLUMN_DTYPES[declared.kind])

    def series(self, decl: Declared | str) -> tuple[list[float], list[float]]:
        xs, ys = self._section("series")[self._declared("series", decl).name]
        return list(xs), list(ys)

    def caption(self, decl: Declared | str, placeholders: Mapping[str, str] | None = None) -> str:
        section = decl.section if isinstance(decl, Declared) else "images"
        return caption(self._declared(section, decl), self.values(), placeholders)

    def present(self, section: Section, decl: Declared | str | None = None) -> Iterator[Shown]:
        """The present outputs of ``section`` (or of one declaration, a pattern expanded to its keys) in declared
        order, each with its caption filled."""
        values, found = self.values(), self._section(section)
        only = None if decl is None else self._declared(section, decl)
        for key, declared, placeholders in self.outputs.in_order(section, found):
            if only is None or declared == only:
                yield Shown(key, declared, caption(declared, values, placeholders), found[key], placeholders)

    def images(self, decl: Declared | str | None = None) -> Iterator[Shown]:
        return self.present("images", decl)

    def with_role(self, role: Role, section: Section | None = None) -> Iterator[Shown]:
        """The present outputs with ``role`` ("headline", "verdict", "primary"), in declared order."""
        for declared in self.outputs.with_role(role, section):
            yield from self.present(declared.section, declared)

    def items(self) -> list[dict[str, Any]]:
        """The items, each with its declared fields only (a field the declaration lacks is not read by mistake)."""
        return [{k: v for k, v in item.items() if self.outputs.find("items", k) is not None}
                for item in getattr(self.response, "items", None) or []]
