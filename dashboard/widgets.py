"""What several pages show the same way: the image picker, PNG decoding, errors, the top-k chart."""

from __future__ import annotations

import base64
import io
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from client.http import ApiError
from dashboard import state


def png(data: str) -> Image.Image:
    """A base64 PNG from the API → RGB image."""
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def to_png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def choose_image(key: str = "") -> tuple[str, bytes] | None:
    """A built-in sample or an upload: (name, encoded bytes), or None while nothing is chosen."""
    source = st.radio("Image", ["Built-in sample", "Upload"], horizontal=True, key=f"{key}source")
    if source == "Upload":
        upload = st.file_uploader("Upload an image", type=state.UPLOAD_TYPES, key=f"{key}upload")
        return (upload.name, upload.getvalue()) if upload is not None else None
    samples = state.samples()
    if not samples:
        st.info("No samples shipped; upload an image instead.")
        return None
    name = st.selectbox("Sample", list(samples), key=f"{key}sample")
    return name, samples[name].read_bytes()


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


def param_controls(technique: Any, key: str) -> dict[str, Any]:
    """Controls for a technique's own knobs, built from its declaration (ints, floats, choices).

    Knobs without a default (``None``: chosen by the server) and ``layer`` are left out.
    """
    values: dict[str, Any] = {}
    for p in technique.params:
        name, default, types = p["name"], p["default"], p["types"]
        if name == "layer" or default is None:
            continue
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
            values[name] = int(st.number_input(name.replace("_", " ").capitalize(), min_value=1, value=int(default),
                                               step=1, key=widget_key))
        elif types == ["float"]:
            values[name] = float(st.number_input(name.replace("_", " ").capitalize(), value=float(default),
                                                 key=widget_key))
    return values


def selected_indices(event: Any) -> list[int]:
    """The ``customdata[0]`` (a dataset index) of every point a chart's click, box or lasso selected."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    out = []
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if data:
            out.append(int(data[0]))
    return out


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
