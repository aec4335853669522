"""Filters page: what the first layer (and deeper ones) of each model looks for, side by side (CS231n)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, widgets  # noqa: E402


def page() -> None:
    st.header("Filters")
    st.caption("Convolution weights as pictures: first-layer filters in colour, each scaled on its own "
               "(Krizhevsky et al. 2012, fig. 3); deeper filters one grey tile per input channel, 0 is mid-grey.")
    try:
        models = state.models()
    except ApiError as exc:
        widgets.api_error(exc, "list the models")
        return
    available = [m.name for m in models if m.available and m.weights != "missing"]
    missing = [m.name for m in models if m.weights == "missing"]
    current = state.selected_model()
    chosen = st.multiselect("Models", available, default=[current] if current in available else available[:1],
                            key="filters_models")
    if missing:
        st.caption(f"Not installed here (no weights): {', '.join(missing)} — `convlens weights fetch NAME`.")
    if not chosen:
        st.info("Pick at least one model.")
        return
    layer = None
    if len(chosen) == 1:
        try:
            catalogue = state.layers(chosen[0])
        except ApiError as exc:
            widgets.api_error(exc, "list the layers")
            return
        convs = catalogue.conv_layers
        first = convs.index(catalogue.first_conv_layer) if catalogue.first_conv_layer in convs else 0
        layer = st.selectbox("Layer", convs, key="filters_layer", index=first)
    max_filters = st.slider("Filters shown", 8, 256, 64, 8, key="filters_max")
    progress = st.progress(0.0, text="Loading filters…")
    for column, name in zip(st.columns(len(chosen)), chosen, strict=True):
        progress.progress(chosen.index(name) / len(chosen), text=f"{name}…")
        try:
            response = state.grids("filters", None, name, layer, max_filters=max_filters)
        except ApiError as exc:
            with column:
                widgets.api_error(exc, f"show the filters of {name}")
            continue
        s = response.scalars
        with column:
            grid = widgets.png(response.images["grid"])
            st.image(grid, width="stretch", caption=f"{name} · `{response.layer}` · {int(s['shown'])} of "
                                                    f"{int(s['filters'])} filters, {int(s['kernel_height'])}×"
                                                    f"{int(s['kernel_width'])}, {response.weights} weights")
            st.download_button(f"Download {name}", widgets.to_png_bytes(grid), file_name=f"{name}_filters.png",
                               mime="image/png", key=f"filters_download_{name}")
    progress.empty()


page()
