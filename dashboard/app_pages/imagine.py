"""Imagine page: what does the network think a class, a channel or a neuron looks like? Gradient ascent on
the input (Simonyan et al. 2014; Yosinski et al. 2015; Chollet §9.4) with progress and a live preview."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, synthesis_view, widgets  # noqa: E402


def class_tab(classes: tuple[str, ...]) -> None:
    info = synthesis_view.technique("classviz")
    if info is None:
        return
    left, right = st.columns([1, 2])
    with left:
        target = synthesis_view.target_picker(classes, "classviz")
        with st.expander("Regularisers and steps (Yosinski et al. 2015)", expanded=False):
            params = widgets.param_controls(info, "classviz")
    with right:
        result = synthesis_view.run(info, {}, params, "classviz", target=target, label="Visualise class")
        if result is not None:
            st.image(widgets.png(result.images["result"]), width=320,
                     caption=f"“{result.labels.get('target_label')}” — the model says "
                             f"{result.labels.get('predicted_label')} "
                             f"({result.scalars.get('target_probability', 0):.0%} for the target)")
            synthesis_view.finish(result, f"classviz_{classes[target or 0]}", "classviz")


def unit_tab(catalogue: object) -> None:
    mode = st.radio("Show", ["One channel or neuron", "A gallery of channels"], horizontal=True, key="unit_mode")
    single = mode.startswith("One")
    name = "neuron" if single else "neuron_gallery"
    info = synthesis_view.technique(name)
    if info is None:
        return
    spatial = [r.name for r in catalogue.layers if r.spatial and len(r.output_shape) == 3]  # type: ignore[attr-defined]
    rows = {r.name: r for r in catalogue.layers}  # type: ignore[attr-defined]
    left, right = st.columns([1, 2])
    with left:
        layer = st.selectbox("Layer", spatial, index=len(spatial) - 1, key=f"{name}_layer")
        channels = int(rows[layer].output_shape[0])
        st.caption(f"{channels} channels · receptive field {rows[layer].receptive_field} px")
        params = {}
        if single:
            params["channel"] = int(st.number_input("Channel", 0, channels - 1, 0, key="neuron_channel"))
        else:
            params["first"] = int(st.number_input("First channel", 0, channels - 1, 0, key="gallery_first"))
        with st.expander("Settings"):
            params.update(widgets.param_controls(info, name, skip=("channel", "first")))
    with right:
        result = synthesis_view.run(info, {}, params, name, layer=layer, label="Render")
        if result is not None:
            st.image(widgets.png(result.images["result"]), width=320 if single else "stretch",
                     caption=f"{layer}: what its channel(s) respond to most")
            synthesis_view.finish(result, f"{name}_{layer}", name)


def page() -> None:
    st.header("Imagine")
    st.caption("Images made by gradient ascent on the input: a class (Simonyan et al. 2014, with the "
               "regularisers of Yosinski et al. 2015), or a channel or neuron of any layer (Chollet §9.4).")
    model = state.selected_model()
    try:
        catalogue = state.layers(model)
    except ApiError as exc:
        widgets.api_error(exc, "read the layer catalogue")
        return
    classes_tab, units_tab = st.tabs(["Class visualisation", "Neurons and channels"])
    with classes_tab:
        class_tab(catalogue.classes)
    with units_tab:
        unit_tab(catalogue)


page()
