"""What several pages show the same way: the image picker, PNG decoding, errors, the top-k chart."""

from __future__ import annotations

import base64
import contextlib
import io
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from client.http import ApiError, JobStatus, LayerCatalogue, ModelInfo, TechniqueInfo
from client.results import Result
from convlens.colormaps import plotly_scale
from convlens.schema import CorpusResponse
from dashboard import state
from dashboard.upload import UploadError, check_upload


def png(data: str) -> Image.Image:
    """A base64 PNG from the API → RGB image."""
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def to_png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def choose_image(key: str = "", label: str = "Image", collection: str = "", index: int = 0
                 ) -> tuple[str, bytes] | None:
    """A shipped sample (of ``collection``, see :func:`state.samples`) or an upload: (name, encoded bytes), or
    None while nothing is chosen."""
    source = st.radio(label, ["Sample", "Upload"], horizontal=True, key=f"{key}source")
    if source == "Upload":
        upload = st.file_uploader(f"Upload {label.lower()}", type=state.UPLOAD_TYPES, key=f"{key}upload")
        if upload is None:
            return None
        data = upload.getvalue()
        try:  # before any page decodes it for a preview: the API's limits, a clear message
            check_upload(data)
        except UploadError as exc:
            st.error(f"{upload.name} cannot be used: {exc}.", icon=":material/error:")
            return None
        return upload.name, data
    samples = state.samples(collection)
    if not samples:
        st.info("No samples shipped; upload an image instead.")
        return None
    name = st.selectbox("Sample", list(samples), key=f"{key}sample", index=min(index, len(samples) - 1))
    return name, samples[name].read_bytes()


# What the model picker and the Models page say about a model's weights (the info API's ``weights``).
WEIGHT_BADGES = {"builtin": "built-in", "imagenet": "ImageNet", "registered": "yours", "random": "random",
                 "missing": "weights missing"}
BADGE_COLOURS = {"builtin": "blue", "imagenet": "violet", "registered": "green", "random": "orange",
                 "missing": "orange", "unavailable": "red"}


def model_badge(model: ModelInfo) -> tuple[str, str]:
    """(label, colour) of a model: its weights, or ``unavailable`` (a registered model that fails its check)."""
    if not model.available:
        return "unavailable", BADGE_COLOURS["unavailable"]
    return WEIGHT_BADGES.get(model.weights, model.weights), BADGE_COLOURS.get(model.weights, "gray")


T = TypeVar("T")


def cancellable(run: Callable[[], T], job: Callable[[], str | None], shown: Any, what: str) -> T | None:
    """``run()`` (a long request) and its result; an ApiError is shown instead (None). ``shown`` (the progress
    placeholder) is cleared either way. When the page is left or a Stop button pressed mid-run, Streamlit
    interrupts the script here: the server's job ``job()`` is cancelled too."""
    finished = False
    try:
        result = run()
        finished = True
    except ApiError as exc:
        finished = True
        shown.empty()
        api_error(exc, what)
        return None
    finally:
        running = None if finished else job()
        if running:
            with contextlib.suppress(ApiError):  # best effort: the page is already going away
                state.get_client().cancel(running)
    shown.empty()
    return result


def time_left(elapsed: float, done: float) -> str:
    """A wait's estimate from its pace so far (``done``: the share finished, ``elapsed``: seconds spent): "about
    40 s left"; "estimating the time left…" until there is a pace to go by."""
    if done <= 0.0 or elapsed < 0.5:
        return "estimating the time left…"
    left = elapsed * (1.0 - min(done, 1.0)) / done
    if left < 5:
        return "a few seconds left"
    return f"about {left:.0f} s left" if left < 90 else f"about {left / 60:.0f} min left"


def job_progress(bar: Any, what: str, unit: str = "images", note: str | None = None) -> Callable[[JobStatus], None]:
    """A ``on_job`` callback that moves ``bar`` (an ``st.progress``) as a server job reports its steps, with the
    time left at the pace so far, then ``note`` in brackets (default: cached answers are computed once)."""
    started = time.monotonic()
    after = f" ({FIRST_TIME if note is None else note})" if note != "" else ""

    def show(job: JobStatus) -> None:
        done = min(1.0, job.step / job.total) if job.total else 0.0
        bar.progress(done, text=f"{what}: {job.step:,} of {job.total:,} {unit} — "
                                f"{time_left(time.monotonic() - started, done)}{after}")

    return show


def followed_corpus(info: TechniqueInfo, model: str, starting: str, following: str, failing: str,
                    **params: Any) -> CorpusResponse | None:
    """A corpus answer (cached, :func:`state.corpus`) with a progress bar: ``starting`` until the server reports a
    job, then its steps as ``following`` with the time left. None after an error, shown as "could not
    ``failing``"."""
    endpoint, named = state.request_of(info)
    bar = st.progress(0.0, text=starting)
    try:  # a large dataset is a job on the server: its progress moves the bar
        return state.corpus(endpoint, model, on_job=job_progress(bar, following), **params, **named)
    except ApiError as exc:
        api_error(exc, failing)
        return None
    finally:
        bar.empty()


FIRST_TIME = "first time only: cached afterwards"


def api_error(exc: ApiError, what: str) -> None:
    where = f" (field `{exc.field}`)" if exc.field else ""
    st.error(f"The API could not {what}{where}: {exc.message}", icon=":material/error:")


def top_chart(response: Any) -> go.Figure:
    labels = [t.label for t in response.topk][::-1]
    probs = [t.probability for t in response.topk][::-1]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", text=[f"{p:.1%}" for p in probs],
                           textposition="auto", marker_color="#e4572e"))
    fig.update_layout(height=60 + 32 * len(labels), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


def colour_bar(colormap: str, low: float, high: float, title: str = "") -> go.Figure:
    """A thin horizontal colour bar: the server's colour map (the same anchors, :mod:`convlens.colormaps`) from
    ``low`` to ``high``, both values and the middle as ticks."""
    steps = 64
    span = high - low if high > low else 1.0
    values = [low + span * k / (steps - 1) for k in range(steps)]
    fig = go.Figure(go.Heatmap(z=[values], x=values, y=[0], zmin=low, zmax=low + span, showscale=False,
                               colorscale=plotly_scale(colormap), hovertemplate="%{x:.3g}<extra></extra>"))
    ticks = [low, low + span / 2, low + span]
    # fixed margins (not automargin): a 16 px bar, its tick labels under it, the title above
    fig.update_layout(height=52 + (20 if title else 0), margin=dict(l=22, r=22, t=22 if title else 4, b=30),
                      title=dict(text=title, font=dict(size=12), x=0, xanchor="left", y=1, yanchor="top",
                                 yref="container"))
    fig.update_xaxes(tickvals=ticks, ticktext=[f"{v:.3g}" for v in ticks], ticks="outside", ticklen=3,
                     showgrid=False, fixedrange=True, tickfont=dict(size=11))
    fig.update_yaxes(visible=False, fixedrange=True)
    return fig


def heat_scale(result: Result, key: str, title: str = "") -> bool:
    """The colour bar of a heat map from its declared scale (``convlens.registry.HEAT_SCALE``): the colour map, the
    values its ends stand for, the raw map's range. False (nothing drawn) for an answer without a scale."""
    names = {d.name for d in result.outputs.of("scalars")} | {d.name for d in result.outputs.of("labels")}
    if not {"colormap", "map_low", "map_high"} <= names or not result.label("colormap") or \
            not result.has("scalars", "map_high"):
        return False
    low, high = result.scalar("map_low"), result.scalar("map_high")
    st.plotly_chart(colour_bar(result.label("colormap"), low, high, title), width="stretch",
                    config={"displayModeBar": False}, key=f"{key}:colour_bar")
    raw_min, raw_max = result.scalar("map_min", low), result.scalar("map_max", high)
    note = f"raw map {raw_min:.3g} … {raw_max:.3g}"
    if result.scalar("map_normalised", 0.0):
        note += f"; shown divided by {high:.3g}" + (", values below 0 as 0" if raw_min < low else "")
    st.caption(note)
    return True


def by_depth(names: Iterable[str], catalogue: LayerCatalogue) -> list[str]:
    """Layer names in the model's forward order (the layer catalogue's), not alphabetically (``features.13``
    after ``features.2``); names the catalogue lacks follow, as given. Every chart or list of layers uses it."""
    depth = {row.name: k for k, row in enumerate(catalogue.layers)}
    given = list(dict.fromkeys(names))
    return sorted(given, key=lambda n: (depth.get(n, len(depth)), given.index(n)))


def layer_bars(values: Mapping[str, float], catalogue: LayerCatalogue, y_title: str, height: int = 240) -> go.Figure:
    """One bar per layer, shallow to deep (:func:`by_depth`): a categorical axis in that fixed order."""
    layers = by_depth(values, catalogue)
    fig = go.Figure(go.Bar(x=layers, y=[values[n] for n in layers], marker_color="#29335c",
                           text=[f"{values[n]:.3g}" for n in layers], textposition="auto"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), yaxis_title=y_title)
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=layers, title="layer (shallow → deep)",
                     automargin=True, tickangle=-90)  # upright: names never run into each other in a narrow column
    return fig


def param_controls(technique: Any, key: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Controls for a technique's own knobs, built from its declaration (ints, floats, choices, lists), with
    the declared bounds.

    Knobs without a default (``None``: chosen by the server), ``layer`` and ``skip`` are left out.
    """
    values: dict[str, Any] = {}
    for p in technique.params:
        name, default, types = p["name"], p["default"], p["types"]
        if name == "layer" or default is None or name in skip:
            continue
        low, high = p.get("min"), p.get("max")
        widget_key = f"{key}_{name}"
        if "choice" in types:
            options = list(p["choices"]) + (["grey level"] if "float" in types else [])
            picked = st.selectbox(name.replace("_", " ").capitalize(), options, key=widget_key,
                                  index=options.index(default) if default in options else 0)
            if picked == "grey level":
                picked = st.slider("Grey level", 0.0, 1.0, 0.5, 0.05, key=f"{widget_key}_grey")
            values[name] = picked
        elif types == ["bool"]:
            values[name] = st.checkbox(name.replace("_", " ").capitalize(), value=bool(default), key=widget_key)
        elif types == ["int"]:
            values[name] = int(st.number_input(name.replace("_", " ").capitalize(),
                                               min_value=int(low) if low is not None else
                                               (1 if int(default) >= 1 else None),
                                               max_value=int(high) if high is not None else None,
                                               value=int(default), step=1, key=widget_key))
        elif types == ["float"]:
            values[name] = float(st.number_input(name.replace("_", " ").capitalize(),
                                                 min_value=float(low) if low is not None else None,
                                                 max_value=float(high) if high is not None else None,
                                                 value=float(default), format="%g", key=widget_key))
        elif types == ["tuple"]:
            text = st.text_input(name.replace("_", " ").capitalize() + " (comma-separated)",
                                 ", ".join(f"{v:g}" for v in default), key=widget_key)
            values[name] = text
    return values


def dataset_rows(empty: str = "No dataset yet: create one on the Datasets page.") -> list[dict[str, Any]] | None:
    """The server's datasets, or None once the page has said why there are none to pick from (``empty``)."""
    try:
        rows = state.datasets()
    except ApiError as exc:
        api_error(exc, "list the datasets")
        return None
    if not rows:
        st.info(empty)
        return None
    return rows
