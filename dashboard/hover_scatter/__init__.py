"""A WebGL scatter whose hover shows the point's own image (Streamlit's ``plotly_chart`` has selection
events but no hover events, and Plotly's hover labels cannot hold an ``<img>``).

The component is ``index.html`` here plus the ``plotly.min.js`` shipped in the plotly wheel (offline: no
CDN), copied to a served folder at first use. Thumbnails come from sprite sheets (1,024 tiles of 32 px,
64 to a row, the dataset endpoint's ``sheet`` action) written into that folder as ``sheets/<key>/<k>.png``:
the browser loads a sheet the first time a point of it is hovered and then answers every hover from memory.
Clicking, box- or lasso-selecting points returns their dataset indices to the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly
import streamlit.components.v1 as components

HERE = Path(__file__).resolve().parent
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
PER_SHEET = 1024  # small requests: a sheet never holds the dataset endpoint for long
COLUMNS = 64
TILE = 32
DISPLAY = 96  # px the hovered thumbnail is shown at


def served_dir() -> Path:
    """The folder Streamlit serves the component from: index.html, plotly.min.js, sheets/ (created once)."""
    root = Path(os.environ.get("CONVLENS_DASHBOARD_CACHE") or Path(tempfile.gettempdir()) /
                f"convlens-dashboard-{os.getuid()}") / "hover_scatter"
    root.mkdir(parents=True, exist_ok=True)
    for src in (HERE / "index.html", PLOTLY_JS):
        dst = root / src.name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    return root


def sheet_key(dataset: str, fingerprint: str, images: int) -> str:
    """The sheets' folder name: a dataset's content (fingerprint) and size decide its thumbnails."""
    return f"{dataset}-{hashlib.sha256(f'{fingerprint}:{images}'.encode()).hexdigest()[:12]}-{TILE}"


def missing_sheets(key: str, images: int) -> list[int]:
    folder = served_dir() / "sheets" / key
    return [k for k in range(-(-images // PER_SHEET)) if not (folder / f"{k}.png").is_file()]


def write_sheets(key: str, images: int, fetch: Callable[[int, int, int], str],
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Fetch (``fetch(start, count, tile)`` → base64 PNG) and write every sheet not on disk yet; the number
    written."""
    folder = served_dir() / "sheets" / key
    folder.mkdir(parents=True, exist_ok=True)
    todo = missing_sheets(key, images)
    for done, k in enumerate(todo):
        data = base64.b64decode(fetch(k * PER_SHEET, min(PER_SHEET, images - k * PER_SHEET), TILE))
        tmp = folder / f".{k}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / f"{k}.png")
        if progress is not None:
            progress(done + 1, len(todo))
    return len(todo)


logger = logging.getLogger(__name__)
_RUNNING: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()


def write_sheets_in_background(key: str, images: int, fetch: Callable[[int, int, int], str]
                               ) -> threading.Thread | None:
    """:func:`write_sheets` on a daemon thread (one per sheet folder at a time), so the page's script ends
    with the chart and a rerun (another dataset, a selection) never waits for thumbnails; the hover shows a
    sheet's thumbnails once it is on disk. The thread, or None when nothing is missing."""
    with _LOCK:
        running = _RUNNING.get(key)
        if running is not None and running.is_alive():
            return running
        if not missing_sheets(key, images):
            return None
        def run() -> None:
            try:
                write_sheets(key, images, fetch)
            except Exception:  # noqa: BLE001 — without sheets the hover shows captions only
                logger.exception("hover thumbnails of %s", key)

        thread = threading.Thread(target=run, name=f"sheets-{key}", daemon=True)
        _RUNNING[key] = thread
        thread.start()
        return thread


def layout(height: int) -> dict[str, Any]:
    """The plotly layout the component draws with. The toolbar (modebar) sits over the figure's top right, so the
    legend goes under the plot, anchored to the figure's bottom edge, where nothing else is drawn."""
    return {"height": height, "margin": {"l": 10, "r": 10, "t": 36, "b": 10}, "dragmode": "lasso",
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container",
                       "itemsizing": "constant"},
            "xaxis": {"visible": False}, "yaxis": {"visible": False}}


def scatter_args(points: list[list[float]], items: list[dict[str, Any]], colour_by: str, palette: tuple[str, ...],
                 key: str, height: int = 620) -> dict[str, Any]:
    """The component's arguments: one trace per colour group (x, y, dataset indices), per-image captions,
    where the sheets are, and a version that changes when anything drawn changes."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(str(item[colour_by]), []).append(i)
    traces = [{"name": name, "color": palette[k % len(palette)], "index": members,
               "x": [round(points[i][0], 4) for i in members], "y": [round(points[i][1], 4) for i in members]}
              for k, (name, members) in enumerate(sorted(groups.items()))]
    args = {"traces": traces, "files": [str(it["file"]) for it in items],
            "labels": [str(it["label"]) for it in items], "predicted": [str(it["predicted"]) for it in items],
            "sheet": {"base": f"sheets/{key}/", "per_sheet": PER_SHEET, "columns": COLUMNS, "tile": TILE,
                      "display": DISPLAY},
            "marker": 4 if len(points) > 5000 else 7, "height": height, "layout": layout(height)}
    args["version"] = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    return args


def hover_scatter(args: dict[str, Any], key: str) -> list[int]:
    """Draw the scatter; the dataset indices of the last click / box / lasso selection ([] for none)."""
    component = components.declare_component("hover_scatter", path=str(served_dir()))
    value = component(**args, key=key, default=None)
    if not isinstance(value, dict):
        return []
    return [int(i) for i in value.get("selected") or []]
