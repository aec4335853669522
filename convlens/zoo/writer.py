"""Write a manifest as TOML (the standard library reads TOML but does not write it).

Only what a manifest holds: strings, booleans, integers, floats, lists and tables (inline below the
second level). The text is read back with ``tomllib`` and compared, so a value that does not survive
the trip is refused instead of written wrong.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from convlens.zoo.manifest import ManifestError

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _string(k)


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, where) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x, where)}" for k, x in v.items()) + "}"
    raise ManifestError(where, f"{v!r} cannot be written as TOML (no null, no {type(v).__name__})")


def dumps(doc: Mapping[str, Mapping[str, Any] | Any]) -> str:
    """Top-level values first, then one ``[table]`` per mapping; values of a table written inline."""
    lines = [f"{_key(k)} = {_value(v, k)}" for k, v in doc.items() if not isinstance(v, Mapping)]
    for table, body in doc.items():
        if isinstance(body, Mapping) and body:
            lines += ["", f"[{_key(table)}]"]
            lines += [f"{_key(k)} = {_value(v, f'{table}.{k}')}" for k, v in body.items()]
    text = "\n".join(lines) + "\n"
    expected = {k: v for k, v in doc.items() if not isinstance(v, Mapping) or v}
    if tomllib.loads(text) != _plain(expected):
        raise ManifestError("model.toml", "a value does not survive writing as TOML")
    return text


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
