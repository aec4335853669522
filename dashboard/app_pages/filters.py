"""Filters page: what the first layer (and deeper ones) of each model looks for, side by side (CS231n)."""

from __future__ import annotations

import streamlit as st

from client.http import ApiError
from dashboard import state, widgets

TITLE, ICON = "Filters", ":material/filter:"  # how the sidebar lists this page (dashboard.navigation)


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
    [info] = state.served_by(__file__)
    endpoint, named = state.request_of(info)
    progress = st.progress(0.0, text="Loading filters…")
    for column, name in zip(st.columns(len(chosen)), chosen, strict=True):
        progress.progress(chosen.index(name) / len(chosen), text=f"{name}…")
        try:
            response = state.grids(endpoint, None, name, layer, max_filters=max_filters, **named)
        except ApiError as exc:
            with column:
                widgets.api_error(exc, f"show the filters of {name}")
            continue
        with column:
            [shown] = list(state.result(info, response).images())  # the gallery, captioned by its declaration
            grid = widgets.png(shown.value)
            st.image(grid, width="stretch", caption=f"{name} · `{response.layer}` · {shown.caption}, "
                                                    f"{response.weights} weights")
            st.download_button(f"Download {name}", widgets.to_png_bytes(grid), file_name=f"{name}_filters.png",
                               mime="image/png", key=f"filters_download_{name}")
    progress.empty()


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
