"""How the synthesis pages run a long job: a Run button, a progress bar with the current preview image, a
Stop button that cancels the job on the server, and the last result kept per page (and per settings, so
going back to earlier settings shows their result without a new run)."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from client.http import ApiError, LayerCatalogue, Progress, TechniqueInfo
from client.results import Shown
from convlens.schema import SynthesisResponse
from dashboard import state, widgets

MAX_KEPT_RESULTS = 16  # per session: results by settings digest


def served(page_file: str) -> list[TechniqueInfo] | None:
    """The synthesis techniques a special page shows (``state.served_by``), or None (with a message) when the
    server offers none such."""
    try:
        found = state.served_by(page_file)
    except ApiError as exc:
        widgets.api_error(exc, "list its techniques")
        return None
    if not found:
        st.error(f"The server offers no technique for the `{Path(page_file).stem}` page.", icon=":material/error:")
        return None
    return found


def served_and_layers(page_file: str) -> tuple[list[TechniqueInfo], LayerCatalogue] | None:
    """A page's techniques and the selected model's layer catalogue, or None (with a message)."""
    found = served(page_file)
    if found is None:
        return None
    try:
        return found, state.layers(state.selected_model())
    except ApiError as exc:
        widgets.api_error(exc, "read the layer catalogue")
        return None


def makes_grid(info: TechniqueInfo) -> bool:
    """Whether a technique's primary image is a grid (a gallery, a ladder, a comparison) rather than one picture."""
    return any(d.kind == "grid" for d in info.outputs.with_role("primary", "images"))


def primary(info: TechniqueInfo, result: SynthesisResponse) -> Shown:
    """The image a result is about (declared with role "primary"), with its caption filled."""
    return next(state.result(info, result).with_role("primary", "images"))


def _digest(info: TechniqueInfo, images: Mapping[str, bytes], target: int | None, layer: str | None,
            params: Mapping[str, Any], model: str) -> str:
    h = hashlib.sha256(json.dumps([info.name, target, layer, dict(params), model], sort_keys=True,
                                  default=str).encode())
    for name in sorted(images):
        h.update(name.encode())
        h.update(hashlib.sha256(images[name]).digest())
    return h.hexdigest()


def run(info: TechniqueInfo, images: Mapping[str, bytes], params: Mapping[str, Any], key: str,
        target: int | None = None, layer: str | None = None, label: str = "Run") -> SynthesisResponse | None:
    """The Run button and, once pressed, the streamed job; returns the result for these settings (or None)."""
    model = state.selected_model()
    digest = _digest(info, images, target, layer, params, model)
    kept: dict[str, SynthesisResponse] = st.session_state.setdefault("synthesis_results", {})
    if st.button(label, type="primary", key=f"{key}_run", icon=":material/play_arrow:"):
        result = _stream(info, images, params, key, target, layer, model)
        if result is not None:
            kept[digest] = result
            while len(kept) > MAX_KEPT_RESULTS:
                kept.pop(next(iter(kept)))
    return kept.get(digest)


def _stream(info: TechniqueInfo, images: Mapping[str, bytes], params: Mapping[str, Any], key: str,
            target: int | None, layer: str | None, model: str) -> SynthesisResponse | None:
    client = state.get_client()
    job = f"{key}-{uuid.uuid4().hex[:12]}"
    panel = st.empty()  # progress bar, Stop and preview while the job runs; cleared when it ends
    with panel.container():
        bar = st.progress(0.0, text="Starting…")
        # Stop under the bar and the preview under Stop, one above the other: a fixed-width preview in a narrow
        # column spilled under a Stop button beside it. Pressing Stop reruns the page, which interrupts this job
        # mid-stream: widgets.cancellable cancels it.
        st.button("Stop", key=f"{key}_stop", icon=":material/stop:",
                  help="Cancel the job; the server stops at its next step")
        preview = st.empty()

    started = time.monotonic()

    def show(progress: Progress) -> None:
        done = min(1.0, progress.step / max(1, progress.total))
        bar.progress(done, text=f"{info.title}: step {progress.step} of {progress.total} — "
                                f"{widgets.time_left(time.monotonic() - started, done)}")
        if progress.preview is not None:
            preview.image(progress.preview, caption="current image", width=220)

    result = widgets.cancellable(
        lambda: client.synthesis(info, images, model=model, target=target, layer=layer, params=params, job=job,
                                 on_progress=show), lambda: job, panel, f"run {info.title}")
    if result is None:
        return None
    if result.scalars.get("cancelled"):
        st.warning(f"Stopped after {int(result.scalars.get('steps', 0))} steps; showing the image so far.")
    return result


def network_note(result: Any) -> None:
    """Which network and weights produced a result — always said, never implied."""
    note = f"Model `{result.model}` ({result.weights} weights)"
    labels = getattr(result, "labels", None) or {}
    if "network" in labels:
        note += f" · measured with: {labels['network']}"
    if result.weights == "random":
        st.warning("This comes from a network with RANDOM weights.")
    st.caption(note)


def before_after(info: TechniqueInfo, result: SynthesisResponse, caption: str, file_stem: str, key: str) -> None:
    """The input (the first declared picture) and the result side by side, then the network note, the download and
    the loss chart."""
    main = primary(info, result)
    before = next(s for s in state.result(info, result).images() if s.key != main.key)
    a, b = st.columns(2)
    a.image(widgets.png(before.value), caption=before.caption, width="stretch")
    b.image(widgets.png(main.value), width="stretch", caption=caption)
    finish(info, result, file_stem, key)


def finish(info: TechniqueInfo, result: SynthesisResponse, file_stem: str, key: str) -> None:
    network_note(result)
    download(result, primary(info, result).key, file_stem, key)
    history_chart(result, key)


# A log axis labelled at whole decades only (10⁻¹, 10⁰, 10¹ …), unlabelled minor ticks between: plotly's automatic
# log ticks label 2…9 of every decade as well, which crams the axis ("0.1, 9, 8, 7 …").
DECADES = dict(type="log", dtick=1, exponentformat="power", showexponent="all", minor=dict(ticks="outside"))
LOG_SPREAD = 100.0  # a loss that falls by this factor or more is drawn on a log axis


def log_axis(values: Sequence[float]) -> dict[str, Any]:
    """:data:`DECADES` over the whole decades around ``values`` (all > 0), so at least two labels show even when
    the values span less than a decade; a linear axis ({}) when some value is not positive."""
    if not values or min(values) <= 0:
        return {}
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return {**DECADES, "range": [low, max(high, low + 1)]}


def history_figure(series: Mapping[str, list[list[float]]]) -> go.Figure:
    """The loss (or score) of each objective term per step; on a decade-labelled log axis when every value is
    positive and they span at least ``LOG_SPREAD`` (a loss falling by orders of magnitude)."""
    fig = go.Figure()
    for name, (steps, values) in series.items():
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=name.replace("_", " ")))
    # the legend to the right of the plot: under it, a horizontal one lands on the axis's labels and title
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10), title="Objective per step",
                      xaxis_title="step", legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top"))
    values = [v for _, ys in series.values() for v in ys]
    if values and min(values) > 0 and max(values) >= LOG_SPREAD * min(values):
        fig.update_yaxes(**log_axis(values))
    return fig


def history_chart(result: SynthesisResponse, key: str) -> None:
    if result.series:
        st.plotly_chart(history_figure(result.series), width="stretch", key=f"{key}_history")


def download(result: SynthesisResponse, name: str, file_stem: str, key: str, label: str | None = None) -> None:
    st.download_button(label or f"Download {name.replace('_', ' ')}",
                       widgets.to_png_bytes(widgets.png(result.images[name])), file_name=f"{file_stem}_{name}.png",
                       mime="image/png", key=f"{key}_download_{name}")


def target_picker(classes: tuple[str, ...], key: str, label: str = "Class", allow_none: str | None = None
                  ) -> int | None:
    options = ([allow_none] if allow_none else []) + list(classes)
    picked = st.selectbox(label, options, key=f"{key}_target")
    if allow_none and picked == allow_none:
        return None
    return classes.index(picked)
