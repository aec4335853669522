"""Attribution page: which pixels made the model decide? Every attribution technique the server
declares (saliency, guided backprop, Grad-CAM, occlusion, ...) side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, widgets  # noqa: E402


def blend(base: Image.Image, heat: Image.Image, alpha: float) -> Image.Image:
    """The server sends the colour-mapped heat at full opacity; the slider blends it here, no new request."""
    return Image.blend(base, heat.resize(base.size), alpha)


def page() -> None:
    st.header("Attribution")
    st.caption("Which pixels decide the class? Simonyan et al. 2014 (saliency), Springenberg et al. 2015 "
               "(guided backprop), Selvaraju et al. 2017 (Grad-CAM), Zeiler & Fergus 2014 (occlusion).")
    model = state.selected_model()
    chosen = widgets.choose_image()
    if chosen is None:
        return
    name, image = chosen
    try:
        catalogue = state.layers(model)
        techniques = state.techniques("attribution")
    except ApiError as exc:
        st.error(f"Cannot reach the model catalogue: {exc.message}", icon=":material/error:")
        return
    shared = {t.endpoint for t in techniques if sum(u.endpoint == t.endpoint for u in techniques) > 1}

    left, right = st.columns([1, 2])
    with left:
        st.image(image, caption=name, width=220)
        target_options = ["predicted class", *catalogue.classes]
        target_label = st.selectbox("Explain class", target_options, key="target")
        target = None if target_label == "predicted class" else target_options.index(target_label) - 1
        cam_layers = catalogue.cam_layers
        layer = st.selectbox("Layer (Grad-CAM)", cam_layers, key="layer",
                             index=cam_layers.index(catalogue.default_cam_layer)
                             if catalogue.default_cam_layer in cam_layers else len(cam_layers) - 1)
        alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="alpha")
        knobs = {}
        for t in techniques:
            if any(p["default"] is not None and p["name"] != "layer" for p in t.params):
                with st.expander(f"{t.title} settings"):
                    knobs[t.name] = widgets.param_controls(t, t.name)

    progress = right.progress(0.0, text="Classifying…")
    try:
        top = state.call("classify", image, model, topk=5)
        results = {}
        for i, t in enumerate(techniques, start=1):
            progress.progress(i / (len(techniques) + 1), text=f"{t.title}…")
            params = dict(knobs.get(t.name, {}), alpha=1.0)
            if t.endpoint in shared:
                params["method"] = t.name
            results[t.name] = state.call(t.endpoint, image, model, target=target,
                                         layer=layer if t.layer == "spatial" else None, **params)
        progress.empty()
    except ApiError as exc:
        progress.empty()
        widgets.api_error(exc, "explain this image")
        return

    with right:
        st.subheader("Top-5 classes")
        st.plotly_chart(widgets.top_chart(top), width="stretch", key="topk_chart")
        if top.weights == "random":
            st.warning("These maps come from a network with RANDOM weights.")
        st.caption(f"Model `{top.model}` with {top.weights} weights")

    explained = next(iter(results.values()))
    st.subheader(f"Why “{explained.target_label}”?")
    for column, t in zip(st.columns(len(techniques)), techniques, strict=True):
        response = results[t.name]
        base = widgets.png(response.images["input"])
        shown = blend(base, widgets.png(response.images["overlay"]), alpha)
        with column:
            st.image(shown, caption=t.title + (f" @ `{response.layer}`" if response.layer else ""), width="stretch")
            st.download_button(f"Download {t.title} map", widgets.to_png_bytes(widgets.png(response.images["map"])),
                               file_name=f"{Path(name).stem}_{t.name}_map.png", mime="image/png",
                               key=f"download_{t.name}")
            for extra in sorted(set(response.images) - {"input", "map", "overlay"}):
                with st.expander(extra.replace("_", " ").capitalize() + " (signed)"):
                    st.image(widgets.png(response.images[extra]), width="stretch")


page()
