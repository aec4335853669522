"""A response told in a few lines through its technique's declared outputs: what ``convlens run``, ``convlens
call`` and ``convlens job wait`` print unless asked for ``--json``. Torch-free (the API's command line imports it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from convlens.outputs import Declared, Outputs, Section, caption

SHOWN_SCALARS = 8  # headline and verdict scalars first, then the technique's own, then its family's
SHOWN_LABELS = 8
SHOWN_TOPK = 3
MAX_VALUE_WIDTH = 16  # a longer value (a label) pushes its own caption right rather than every row's
JSON_HINT = "--json for the full response"
UNFAMILIAR = ("warning: this input does not look like {model}'s training data, so its prediction means little. "
              "For photos: ImageNet weights (`make weights`, then --model resnet50); for your own kind of images: "
              "your own model (`convlens model add`, README).")
_ROLES_FIRST = ("headline", "verdict")
Row = tuple[str, Declared | None, dict[str, str]]


def response_text(declared: Outputs, response: Mapping[str, Any], as_json: bool = False,
                  common: Outputs = Outputs()) -> str:
    """What the command line prints of an answer whose images are written (name → path): all of it as JSON
    (``--json``), else :func:`summary_lines`. A declared integer scalar is an integer either way."""
    if not as_json:
        return "\n".join(summary_lines(declared, response, common))
    scalars = response.get("scalars")
    typed = {"scalars": declared.typed_scalars(scalars)} if isinstance(scalars, Mapping) else {}
    return json.dumps({**response, **typed}, indent=2)


def summary_lines(declared: Outputs, response: Mapping[str, Any],
                  common: Outputs = Outputs()) -> list[str]:
    """``response`` (its images already written: name → path) in a few lines: what ran, one line per written
    file with its caption, the prediction, the labels and the headline scalars with their units (a declared
    integer as an integer), then what was left out (more scalars, series, items) and how to see it.

    Of the scalars, the headline and verdict ones come first, then the technique's own, then those it shares
    with its family (``common``, e.g. ``registry.FAMILY_OUTPUTS``: layout and timing), each in declared order."""
    scalars = declared.typed_scalars(response.get("scalars") or {})
    labels = dict(response.get("labels") or {})
    values = {**scalars, **labels}
    lines = [_head(response)]
    images = response.get("images") or {}
    width = max((len(str(path)) for path in images.values()), default=0)
    for key, row, placeholders in _in_declared_order(declared, "images", images):
        about = caption(row, values, placeholders) if row is not None else ""
        lines.append(f"wrote {images[key]!s:<{width}}  {about}".rstrip())
    prediction = _prediction(response)
    if prediction:
        lines.append(prediction)
    if scalars.get("familiar") == 0:  # the familiarity verdict (registry.FAMILIARITY): say what it means
        lines.append(UNFAMILIAR.format(model=response.get("model", "the model")))
    shown_labels = _in_declared_order(declared, "labels", labels)[:SHOWN_LABELS]
    shown_scalars = sorted(_in_declared_order(declared, "scalars", scalars),
                           key=lambda r: _rank(r[1], common))[:SHOWN_SCALARS]
    table = [(key, str(labels[key]) if present is labels else _number(scalars[key], row),
              caption(row, values, placeholders) if row is not None else "")
             for rows, present in ((shown_labels, labels), (shown_scalars, scalars))
             for key, row, placeholders in rows]
    key_width = max((len(key) for key, _, _ in table), default=0)
    value_width = min(max((len(shown) for _, shown, _ in table), default=0), MAX_VALUE_WIDTH)
    lines += [f"{key:<{key_width}}  {shown:<{value_width}}  {about}".rstrip() for key, shown, about in table]
    left = _left_out(response, len(scalars) - len(shown_scalars), len(labels) - len(shown_labels))
    lines.append(f"left out: {', '.join(left)} ({JSON_HINT})" if left else f"({JSON_HINT})")
    return lines


def _rank(declared: Declared | None, common: Outputs) -> int:
    """0 a headline or verdict, 1 the technique's own, 2 its family's, 3 undeclared (an older server's)."""
    if declared is None:
        return 3
    if declared.role in _ROLES_FIRST:
        return 0
    return 2 if declared in common.declared else 1


def _head(response: Mapping[str, Any]) -> str:
    """``activations · model builtin (builtin weights) · layer features · 0.06 s``."""
    parts = [str(response.get("technique") or "answer")]
    if response.get("model"):
        parts.append(f"model {response['model']}" + (f" ({response['weights']} weights)"
                                                     if response.get("weights") else ""))
    if response.get("layer"):
        parts.append(f"layer {response['layer']}")
    seconds = response.get("seconds")
    if seconds is None and isinstance(response.get("elapsed_ms"), (int, float)):
        seconds = response["elapsed_ms"] / 1000
    if isinstance(seconds, (int, float)):
        parts.append(f"{seconds:.3g} s")
    return " · ".join(parts)


def _prediction(response: Mapping[str, Any]) -> str:
    """``target 4 (ring) · top: ring 97.1%, square 2.0%, cross 0.5%``; "" when the answer has neither."""
    parts = []
    if response.get("target") is not None:
        label = response.get("target_label")
        parts.append(f"target {response['target']}" + (f" ({label})" if label else ""))
    topk = response.get("topk") or []
    if topk:
        parts.append("top: " + ", ".join(f"{t.get('label', t.get('index'))} {t.get('probability', 0):.1%}"
                                         for t in topk[:SHOWN_TOPK]))
    return " · ".join(parts)


def _left_out(response: Mapping[str, Any], scalars: int, labels: int) -> list[str]:
    """What the summary does not show, counted: ``["3 more scalars", "1 series", "128 items"]``."""
    counts = [(scalars, "more scalar", "more scalars"), (labels, "more label", "more labels"),
              (len(response.get("series") or {}), "series", "series"),
              (len(response.get("items") or []), "item", "items"),
              (max(0, len(response.get("topk") or []) - SHOWN_TOPK), "more top-k class", "more top-k classes"),
              (len(response.get("vectors") or []), "vector", "vectors"),
              (len(response.get("points") or []), "point", "points")]
    return [f"{n} {one if n == 1 else many}" for n, one, many in counts if n]


def _in_declared_order(declared: Outputs, section: Section, present: Mapping[str, Any]) -> list[Row]:
    """The present keys in declared order; a key the declaration does not know (an older server) comes last."""
    ordered: list[Row] = list(declared.in_order(section, present))
    seen = {key for key, _, _ in ordered}
    return ordered + [(key, None, {}) for key in present if key not in seen]


def _number(value: Any, declared: Declared | None) -> str:
    """The value and its unit: ``3.2 s``, ``12 px``, ``45%``; a whole number (declared integer, or an int) in
    full (``25088``, not ``2.509e+04``)."""
    unit = declared.unit if declared is not None else ""
    whole = isinstance(value, int) or (declared is not None and declared.integer and isinstance(value, float)
                                       and value.is_integer())
    text = str(int(value)) if whole else f"{value:.4g}" if isinstance(value, float) else str(value)
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"
