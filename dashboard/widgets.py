"""What several pages show the same way: the image picker, PNG decoding, errors, the top-k chart."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Callable
from typing import Any, TypeVar

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from client.http import ApiError, ModelInfo
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


def dataset_rows() -> list[dict[str, Any]] | None:
    """The server's datasets, or None once the page has said why there are none to pick from."""
    try:
        rows = state.datasets()
    except ApiError as exc:
        api_error(exc, "list the datasets")
        return None
    if not rows:
        st.info("No dataset yet: create one on the Datasets page.")
        return None
    return rows
