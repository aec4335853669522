"""Attribution page: which pixels made the model decide? Saliency, guided backprop and Grad-CAM side by side."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import state  # noqa: E402
from client.http import ApiError  # noqa: E402

METHODS = (("vanilla", "Vanilla gradient"), ("guided", "Guided backprop"), ("gradcam", "Grad-CAM"))


def png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def to_png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def blend(base: Image.Image, heat: Image.Image, alpha: float) -> Image.Image:
    """The server sends the colour-mapped heat at full opacity; the slider blends it here, no new request."""
    return Image.blend(base, heat.resize(base.size), alpha)


def choose_image() -> tuple[str, bytes] | None:
    source = st.radio("Image", ["Built-in sample", "Upload"], horizontal=True, key="source")
    if source == "Upload":
        upload = st.file_uploader("Upload an image", type=state.UPLOAD_TYPES, key="upload")
        return (upload.name, upload.getvalue()) if upload is not None else None
    samples = state.samples()
    if not samples:
        st.info("No samples shipped; upload an image instead.")
        return None
    name = st.selectbox("Sample", list(samples), key="sample")
    return name, samples[name].read_bytes()


def top_chart(response) -> go.Figure:  # type: ignore[no-untyped-def]
    labels = [t.label for t in response.topk][::-1]
    probs = [t.probability for t in response.topk][::-1]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", text=[f"{p:.1%}" for p in probs],
                           textposition="auto", marker_color="#e4572e"))
    fig.update_layout(height=60 + 32 * len(labels), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


def page() -> None:
    st.header("Attribution")
    st.caption("Which pixels decide the class? Simonyan et al. 2014 (saliency), Springenberg et al. 2015 "
               "(guided backprop), Selvaraju et al. 2017 (Grad-CAM).")
    model = state.selected_model()
    chosen = choose_image()
    if chosen is None:
        return
    name, image = chosen

    try:
        catalogue = state.layers(model)
    except ApiError as exc:
        st.error(f"Cannot reach the model catalogue: {exc.message}", icon=":material/error:")
        return

    left, right = st.columns([1, 2])
    with left:
        st.image(image, caption=name, width=220)
        target_options = ["predicted class", *catalogue.classes]
        target_label = st.selectbox("Explain class", target_options, key="target")
        target = None if target_label == "predicted class" else target_options.index(target_label) - 1
        cam_layers = catalogue.cam_layers
        layer = st.selectbox("Grad-CAM layer", cam_layers, key="layer",
                             index=cam_layers.index(catalogue.default_cam_layer)
                             if catalogue.default_cam_layer in cam_layers else len(cam_layers) - 1)
        alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="alpha")

    progress = right.progress(0.0, text="Classifying…")
    try:
        top = state.call("classify", image, model, topk=5)
        results = {}
        for i, (method, title) in enumerate(METHODS, start=1):
            progress.progress(i / (len(METHODS) + 1), text=f"{title}…")
            results[method] = state.call("saliency", image, model, target=target,
                                         layer=layer if method == "gradcam" else None, method=method, alpha=1.0)
        progress.empty()
    except ApiError as exc:
        progress.empty()
        where = f" (field `{exc.field}`)" if exc.field else ""
        st.error(f"The API could not explain this image{where}: {exc.message}", icon=":material/error:")
        return

    with right:
        st.subheader("Top-5 classes")
        st.plotly_chart(top_chart(top), width="stretch", key="topk_chart")
        weights = top.weights
        if weights == "random":
            st.warning("These maps come from a network with RANDOM weights.")
        st.caption(f"Model `{top.model}` with {weights} weights")

    explained = results["vanilla"]
    st.subheader(f"Why “{explained.target_label}”?")
    columns = st.columns(len(METHODS))
    for column, (method, title) in zip(columns, METHODS, strict=True):
        response = results[method]
        base = png(response.images["input"])
        shown = blend(base, png(response.images["overlay"]), alpha)
        with column:
            caption = title + (f" @ `{response.layer}`" if method == "gradcam" else "")
            st.image(shown, caption=caption, width="stretch")
            st.download_button(f"Download {title} map", to_png_bytes(png(response.images["map"])),
                               file_name=f"{Path(name).stem}_{method}_map.png", mime="image/png",
                               key=f"download_{method}")
            if "gradient" in response.images:
                with st.expander("Guided gradient (RGB)"):
                    st.image(png(response.images["gradient"]), width="stretch")


page()
