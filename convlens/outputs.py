"""What a technique answers, declared next to its params: named images, scalars, labels, series, item fields,
columns.

A technique lists its outputs in its ``@technique(..., outputs=(...))`` declaration; the pipeline checks every
result against it (an undeclared or missing key is a :class:`OutputMismatch`), the info API exports it, and the
client and the dashboard read results through it. Torch-free, so the client and the dashboard import it too.

A name may hold ``{placeholders}`` (``"psnr_{layer}"``): it then stands for any number of keys of that shape, and
its caption may use the placeholder. A caption is a format template over the result's scalars and labels
(``"fooled: {result_label} ({result_probability:.0%})"``); the names it uses must be declared.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Section = Literal["images", "scalars", "labels", "series", "items", "columns"]
SECTIONS: tuple[Section, ...] = ("images", "scalars", "labels", "series", "items", "columns")
# A column's kind: its element type, sent as base64 of the little-endian array (numpy's dtype string beside it).
ColumnType = Literal["float32", "int32", "uint16", "uint8"]
COLUMN_DTYPES: dict[str, str] = {"float32": "<f4", "int32": "<i4", "uint16": "<u2", "uint8": "|u1"}
ImageKind = Literal["picture", "map", "grid", "curve"]
INTEGER = "integer"  # a scalar's kind when it is a count, an index or a 0/1 flag: printed and sent as an integer
# What a page does with an output besides listing it: "headline" a number shown large (a metric); "verdict" a 0/1
# outcome shown as success or warning with its caption; "primary" the image a result is about; "" nothing special.
Role = Literal["", "headline", "verdict", "primary"]
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "images": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
    "scalars": {"type": "number"},
    "labels": {"type": "string"},
    "series": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "array", "items": {"type": "number"}}},
    "columns": {"type": "string", "contentEncoding": "base64"},
}


class OutputMismatch(AssertionError):
    """A result whose keys differ from its technique's declaration: a bug in the technique, caught by the tests."""


@dataclass(frozen=True)
class Declared:
    """One declared output. ``kind``: an image's kind (picture, map, grid, curve), or :data:`INTEGER` for a
    scalar that is always a whole number; ``unit``: a scalar's or a series' unit. ``optional``: present only in
    some runs (e.g. ``cancelled``). ``role``: see :data:`Role`."""

    section: Section
    name: str
    caption: str = ""
    kind: str = ""
    unit: str = ""
    optional: bool = False
    role: str = ""

    @property
    def integer(self) -> bool:
        return self.section == "scalars" and self.kind == INTEGER

    @property
    def is_pattern(self) -> bool:
        return "{" in self.name

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.name))

    def match(self, key: str) -> dict[str, str] | None:
        """The placeholder values if ``key`` is this output (``{}`` for a plain name), else None."""
        if not self.is_pattern:
            return {} if key == self.name else None
        seen: set[str] = set()

        def group(m: re.Match[str]) -> str:  # a placeholder used twice must hold the same text twice
            name = m.group(1)
            text = f"(?P={name})" if name in seen else f"(?P<{name}>.+?)"
            seen.add(name)
            return text

        pattern = _PLACEHOLDER.sub(group, re.escape(self.name).replace(r"\{", "{").replace(r"\}", "}"))
        found = re.fullmatch(pattern, key)
        return found.groupdict() if found else None

    def key_regex(self) -> str:
        """A regular expression for the keys this output stands for (JSON Schema's ``patternProperties``)."""
        literal = _PLACEHOLDER.split(self.name)[::2]  # split keeps the placeholders' names at odd places
        return "^" + ".+".join(re.escape(part) for part in literal) + "$"

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "name": self.name, "caption": self.caption, "kind": self.kind,
                "unit": self.unit, "optional": self.optional, "role": self.role}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Declared:
        return cls(data["section"], data["name"], data.get("caption", ""), data.get("kind", ""),
                   data.get("unit", ""), bool(data.get("optional", False)), data.get("role", ""))


def Image(name: str, caption: str = "", kind: ImageKind = "picture", optional: bool = False,  # noqa: N802
          role: Role = "") -> Declared:
    """A named image, (3, H, W) or (H, W) in [0, 1]."""
    return Declared("images", name, caption, kind, "", optional, role)


def Scalar(name: str, caption: str = "", unit: str = "", optional: bool = False,  # noqa: N802
           role: Role = "", integer: bool = False) -> Declared:
    """A named number (``unit``: "px", "s", "%", "/255", ... or "" for a count or a ratio); ``integer``: always a
    whole number (a count, an index, a 0/1 flag), sent and printed as one."""
    return Declared("scalars", name, caption, INTEGER if integer else "", unit, optional, role)


def Label(name: str, caption: str = "", optional: bool = False) -> Declared:  # noqa: N802
    """A named word or phrase (a class label, a network's name)."""
    return Declared("labels", name, caption, "", "", optional)


def Series(name: str, caption: str = "", unit: str = "", optional: bool = False) -> Declared:  # noqa: N802
    """A named curve as (xs, ys) (a loss per step, a deletion curve)."""
    return Declared("series", name, caption, "", unit, optional)


def Item(name: str, caption: str = "", optional: bool = False) -> Declared:  # noqa: N802
    """A field of every item (a tile of a grid, a neighbour, a patch)."""
    return Declared("items", name, caption, "", "", optional)


def Column(name: str, caption: str = "", kind: ColumnType = "float32", optional: bool = False) -> Declared:  # noqa: N802
    """A named value per image of a corpus (a coordinate, a class index, a confidence), sent compactly: base64 of
    the little-endian array of ``kind`` (1M float32 values are 5.3 MB of text rather than ~20 MB of JSON numbers)."""
    if kind not in COLUMN_DTYPES:
        raise ValueError(f"column {name!r}: kind must be one of {', '.join(COLUMN_DTYPES)}, got {kind!r}")
    return Declared("columns", name, caption, kind, "", optional)


@dataclass(frozen=True)
class Outputs:
    """A technique's declared outputs, in display order."""

    declared: tuple[Declared, ...] = ()

    def __add__(self, other: Outputs | Iterable[Declared]) -> Outputs:
        """These outputs, then ``other``'s; one of ``other`` named like one of these replaces it in place (a
        technique refines its family's caption, unit or optionality of a common key)."""
        more = other.declared if isinstance(other, Outputs) else tuple(other)
        later = {(d.section, d.name): d for d in more}
        kept = tuple(later.get((d.section, d.name), d) for d in self.declared)
        names = {(d.section, d.name) for d in self.declared}
        return Outputs(kept + tuple(d for d in more if (d.section, d.name) not in names))

    def of(self, section: Section) -> tuple[Declared, ...]:
        return tuple(d for d in self.declared if d.section == section)

    def find(self, section: Section, key: str) -> tuple[Declared, dict[str, str]] | None:
        """The declaration ``key`` falls under (plain names first), with its placeholder values."""
        rows = sorted(self.of(section), key=lambda d: d.is_pattern)
        for d in rows:
            found = d.match(key)
            if found is not None:
                return d, found
        return None

    def get(self, section: Section, name: str) -> Declared:
        """The declaration named ``name`` (exactly as declared, patterns included); KeyError if none."""
        for d in self.of(section):
            if d.name == name:
                return d
        raise KeyError(f"no {section[:-1]} {name!r} is declared; declared: "
                       f"{', '.join(d.name for d in self.of(section)) or 'none'}")

    def with_role(self, role: Role, section: Section | None = None) -> tuple[Declared, ...]:
        """The outputs a page shows in a special way (``role``), in declared order."""
        return tuple(d for d in self.declared if d.role == role and section in (None, d.section))

    def keys_of(self, section: Section, name: str, present: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
        """The present keys that the declaration ``name`` stands for, with their placeholder values."""
        declared = self.get(section, name)
        return [(k, found) for k in present if (found := declared.match(k)) is not None
                and (not declared.is_pattern or self.find(section, k) == (declared, found))]

    def in_order(self, section: Section, present: Iterable[str]) -> list[tuple[str, Declared, dict[str, str]]]:
        """The present keys that are declared, in declared order (a pattern's keys where it stands), each with
        its declaration and placeholder values."""
        keys = list(present)
        return [(key, declared, found) for declared in self.of(section)
                for key, found in self.keys_of(section, declared.name, keys)]

    def mismatches(self, present: Mapping[Section, Iterable[str]]) -> list[str]:
        """What differs between a result's keys (by section) and the declaration: [] when they agree."""
        problems = []
        for section in SECTIONS:
            keys = list(present.get(section, ()))
            problems += [f"{section}.{k} is not declared" for k in keys if self.find(section, k) is None]
            if section == "items" and not keys:
                continue  # no items at all (an empty dataset): no field is missing from any of them
            problems += [f"{section}.{d.name} is declared but missing" for d in self.of(section)
                         if not d.optional and not d.is_pattern and d.name not in keys]
        return problems

    def check(self, technique: str, present: Mapping[Section, Iterable[str]]) -> None:
        problems = self.mismatches(present)
        if problems:
            raise OutputMismatch(f"{technique}: its result differs from its declared outputs: {'; '.join(problems)}")

    def check_captions(self, technique: str) -> None:
        """Every caption's fields name a declared scalar or label, or a placeholder of its own name."""
        scalars, labels = ({d.name for d in self.of(section) if not d.is_pattern} for section in ("scalars", "labels"))
        for d in self.declared:
            for field_name in caption_fields(d.caption):
                if field_name in d.placeholders:
                    continue
                if field_name not in scalars | labels:
                    raise ValueError(f"{technique}: caption of {d.section}.{d.name} uses {{{field_name}}}, "
                                     "which is not a declared scalar or label")
                if field_name in scalars & labels:
                    raise ValueError(f"{technique}: caption of {d.section}.{d.name} uses {{{field_name}}}, "
                                     "which is both a scalar and a label: say which in words instead")

    def typed_scalars(self, scalars: Mapping[str, Any]) -> dict[str, Any]:
        """``scalars`` with each declared integer (a whole, finite number) as an ``int``; the rest as given."""
        def typed(key: str, value: Any) -> Any:
            found = self.find("scalars", key)
            whole = isinstance(value, float) and value.is_integer()  # False for nan and inf
            return int(value) if found is not None and found[0].integer and whole else value

        return {key: typed(key, value) for key, value in scalars.items()}

    def to_json(self) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.declared]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (2020-12) of a response's declared sections: each section an object that holds exactly the
        declared keys (patterns as ``patternProperties``; the non-optional plain names required), items objects
        with the declared fields. The info API sends it as ``response_schema``."""
        sections: dict[str, Any] = {}
        for section, value in _VALUE_SCHEMAS.items():
            rows = self.of(section)  # type: ignore[arg-type]
            sections[section] = {
                "type": "object", "additionalProperties": False,
                "properties": {d.name: _value_schema(d, value) for d in rows if not d.is_pattern},
                "patternProperties": {d.key_regex(): _value_schema(d, value) for d in rows if d.is_pattern},
                "required": [d.name for d in rows if not d.optional and not d.is_pattern]}
        fields = {d.name: {"description": d.caption} for d in self.of("items")}
        sections["items"] = {"type": "array",
                             "items": {"type": "object", "properties": fields, "additionalProperties": False}}
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": sections}

    @classmethod
    def from_json(cls, rows: Iterable[Mapping[str, Any]]) -> Outputs:
        return cls(tuple(Declared.from_json(r) for r in rows))


def _value_schema(declared: Declared, value: dict[str, Any]) -> dict[str, Any]:
    """One declared key's JSON Schema: its section's value type (an integer for an integer scalar), its caption."""
    if declared.section == "columns":
        return {**value, "description": f"{declared.caption} (base64 of little-endian {declared.kind})",
                "x-dtype": COLUMN_DTYPES[declared.kind]}
    return {**value, **({"type": "integer"} if declared.integer else {}), "description": declared.caption}


def caption_fields(caption: str) -> list[str]:
    """The names a caption template fills in; a positional field (``{}``, ``{0}``) is refused, since a caption
    is filled by name only."""
    fields = [f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(caption) if f is not None]
    if any(not f or f.isdigit() for f in fields):
        raise ValueError(f"caption {caption!r} has a positional field: name what it shows")
    return fields


def caption(declared: Declared, values: Mapping[str, Any], placeholders: Mapping[str, str] | None = None) -> str:
    """``declared``'s caption filled from a result's scalars and labels; a field it lacks leaves the template's
    text without that part rather than failing (a page must not break on an optional value)."""
    filled = {**values, **(placeholders or {})}
    try:
        return declared.caption.format(**filled)
    except (KeyError, ValueError, IndexError, TypeError, AttributeError):  # TypeError: a format spec on None
        return _words_before_fields(declared.caption) or declared.name


def _words_before_fields(template: str) -> str:
    """A caption's text before its first field, without an opened bracket or a dangling separator."""
    head = template.split("{")[0]
    if head.count("(") > head.count(")"):
        head = head[:head.rindex("(")]
    return head.strip(" :=·,;–—-“\"'(")
