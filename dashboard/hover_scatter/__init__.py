"""A scatter of up to a million points whose hover shows the point's own image (Streamlit's ``plotly_chart`` has
selection events but no hover events, and Plotly's hover labels cannot hold an ``<img>``; Plotly's WebGL scatter
is software-rendered and slow at 1M points in a GPU-less browser).

The component is ``index.html`` here (a canvas-2D renderer, no build step), copied to a served folder at first use.
The points' columns (``x``, ``y``, ``label``, ``predicted``, ``confidence``, …) are written there as one binary file
of little-endian typed arrays, ``data/<digest>.bin.gz`` (:func:`write_columns`), which the browser fetches once: the
component's arguments stay a few kilobytes however many points there are. Thumbnails come from sprite sheets (1,024
tiles of 32 px, 64 to a row, the dataset endpoint's ``sheet`` action) written into that folder as
``sheets/<key>/<k>.png``: the browser loads a sheet the first time a point of it is hovered and then answers every
hover from memory. Clicking or lasso-selecting points returns their dataset indices to the page.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit.components.v1 as components

HERE = Path(__file__).resolve().parent
PER_SHEET = 1024  # small requests: a sheet never holds the dataset endpoint for long
COLUMNS = 64
TILE = 32
DISPLAY = 96  # px the hovered thumbnail is shown at
POINTS_MAX = 50_000  # with more points than this in view the component draws their density, else each point
KEEP_DATA_FILES = 8  # columns files kept in the served folder (the newest; one per map and colour channel)
KINDS = {"<f4": "float32", "<i4": "int32", "<u2": "uint16", "|u1": "uint8"}


def served_dir() -> Path:
    """The folder Streamlit serves the component from: index.html, data/, sheets/ (created once)."""
    root = Path(os.environ.get("CONVLENS_DASHBOARD_CACHE") or Path(tempfile.gettempdir()) /
                f"convlens-dashboard-{os.getuid()}") / "hover_scatter"
    root.mkdir(parents=True, exist_ok=True)
    for src in (HERE / "index.html",):
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


def write_columns(columns: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write the points' columns, each (N,) little-endian and 4-byte aligned, as one file in the served folder
    (named by its content's digest, so a page rerun reuses it and the browser's cache holds); what the component
    needs to read it back: ``{"url", "n", "columns": {name: [byte offset, kind]}}``.

    The file is a gzip member of stored (uncompressed) blocks, ``data/<digest>.bin.gz``: Streamlit's server gzips
    every component file at level 9 on every request unless its type is already compressed (17 MB of columns at
    1M points took seconds), and a ``.gz`` file is served as it is; the browser unpacks it natively
    (``DecompressionStream``), and writing stored blocks costs no more than writing the bytes."""
    n = len(next(iter(columns.values())))
    parts, layout, offset = [], {}, 0
    for name, values in columns.items():
        array = np.asarray(values)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        if len(array) != n or array.dtype.str not in KINDS:
            raise ValueError(f"column {name!r}: {len(array)} values of {array.dtype}, expected {n} of "
                             f"{', '.join(KINDS.values())}")
        data = np.ascontiguousarray(array).tobytes()
        layout[name] = [offset, KINDS[array.dtype.str]]
        parts.append(data + b"\0" * (-len(data) % 4))
        offset += len(parts[-1])
    blob = b"".join(parts)
    digest = hashlib.blake2b(blob, digest_size=12).hexdigest()
    folder = served_dir() / "data"
    folder.mkdir(exist_ok=True)
    path = folder / f"{digest}.bin.gz"
    if not path.is_file():
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        tmp.write_bytes(gzip.compress(blob, compresslevel=0, mtime=0))
        os.replace(tmp, path)
        for old in sorted(folder.glob("*.bin.gz"), key=lambda p: p.stat().st_mtime)[:-KEEP_DATA_FILES]:
            if old != path:
                old.unlink(missing_ok=True)
    return {"url": f"data/{path.name}", "n": n, "columns": layout}


def scatter_args(data: dict[str, Any], colour: dict[str, Any], names: dict[str, dict[str, str]], key: str,
                 filter: dict[str, Any] | None = None, height: int = 620) -> dict[str, Any]:
    """The component's arguments: where the columns are (:func:`write_columns`), how to colour the points
    (``{"column", "colours", "legend"}`` by class code, or ``{"column", "range", "ramp", "title"}`` for a continuous
    column), the class names of the label and predicted codes (code as text → name, for the hover's caption), the
    filter (``label``/``predicted``: codes kept, or None for all; ``confidence``: [low, high]), where the sheets are."""
    return {"data": data, "colour": colour, "names": names, "filter": filter or {},
            "sheet": {"base": f"sheets/{key}/", "per_sheet": PER_SHEET, "columns": COLUMNS, "tile": TILE,
                      "display": DISPLAY},
            "points_max": POINTS_MAX, "radius": 2 if data["n"] > 5000 else 3, "plot_height": height}


def hover_scatter(args: dict[str, Any], key: str) -> list[int]:
    """Draw the scatter; the dataset indices of the last click or lasso selection ([] for none)."""
    component = components.declare_component("hover_scatter", path=str(served_dir()))
    value = component(**args, key=key, default=None)
    if not isinstance(value, dict):
        return []
    return [int(i) for i in value.get("selected") or []]
