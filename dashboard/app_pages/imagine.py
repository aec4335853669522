"""Classes and neurons page: what does the network think a class, a channel or a neuron looks like? Gradient ascent on
the input (Simonyan et al. 2014; Yosinski et al. 2015; Chollet §9.4) with progress and a live preview."""

from __future__ import annotations

import streamlit as st

from client.http import LayerCatalogue, TechniqueInfo
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Classes and neurons", ":material/auto_awesome:"  # how the sidebar lists this page (dashboard.navigation)


def class_tab(info: TechniqueInfo, classes: tuple[str, ...]) -> None:
    left, right = st.columns([1, 2])
    with left:
        target = synthesis_view.target_picker(classes, info.name)
        with st.expander("Regularisers and steps (Yosinski et al. 2015)", expanded=False):
            params = widgets.param_controls(info, info.name)
    with right:
        result = synthesis_view.run(info, {}, params, info.name, target=target, label="Visualise class")
        if result is not None:
            shown = synthesis_view.primary(info, result)
            st.image(widgets.png(shown.value), width=320, caption=shown.caption)
            synthesis_view.finish(info, result, f"{info.name}_{classes[target or 0]}", info.name)


def unit_tab(units: list[TechniqueInfo], catalogue: LayerCatalogue) -> None:
    """One channel or neuron, or a gallery of channels (the unit technique whose primary image is a grid)."""
    mode = st.radio("Show", ["One channel or neuron", "A gallery of channels"], horizontal=True, key="unit_mode")
    single = mode.startswith("One")
    info = next(t for t in units if synthesis_view.makes_grid(t) != single)
    name = info.name
    spatial = [r.name for r in catalogue.layers if r.spatial and len(r.output_shape) == 3]
    rows = {r.name: r for r in catalogue.layers}
    left, right = st.columns([1, 2])
    with left:
        # the technique's own default (the Grad-CAM layer: the last conv stage), not a 1×1 pooling output
        default = spatial.index(catalogue.default_cam_layer) if catalogue.default_cam_layer in spatial else -1
        layer = st.selectbox("Layer", spatial, index=default % len(spatial), key=f"{name}_layer")
        channels = int(rows[layer].output_shape[0])
        st.caption(f"{channels} channels · receptive field {rows[layer].receptive_field} px")
        params: dict[str, object] = {}
        if single:  # empty: the server renders the channel most active on the model's sample images
            channel = st.number_input("Channel", 0, channels - 1, None, key="neuron_channel",
                                      placeholder="the most active on the samples")
            params.update({} if channel is None else {"channel": int(channel)})
        else:
            params["first"] = int(st.number_input("First channel", 0, channels - 1, 0, key="gallery_first"))
        with st.expander("Settings"):
            params.update(widgets.param_controls(info, name, skip=("channel", "first")))
    with right:
        result = synthesis_view.run(info, {}, params, name, layer=layer, label="Render")
        if result is not None:
            shown = synthesis_view.primary(info, result)
            most_active = single and state.result(info, result).scalar("most_active", 0)
            chosen = " (the most active on the model's sample images)" if most_active else ""
            st.image(widgets.png(shown.value), width=320 if single else "stretch",
                     caption=f"{layer}: {shown.caption}{chosen}")
            synthesis_view.finish(info, result, f"{name}_{layer}", name)


def page() -> None:
    st.header(TITLE)
    st.caption("Images made by gradient ascent on the input: a class (Simonyan et al. 2014, with the "
               "regularisers of Yosinski et al. 2015), or a channel or neuron of any layer (Chollet §9.4).")
    found = synthesis_view.served_and_layers(__file__)
    if found is None:
        return
    served, catalogue = found
    classes = [t for t in served if t.layer == "none"]  # a class needs no layer; a unit lives in one
    units = [t for t in served if t.layer != "none"]
    classes_tab, units_tab = st.tabs(["Class visualisation", "Neurons and channels"])
    with classes_tab:
        for info in classes:
            class_tab(info, catalogue.classes)
    with units_tab:
        unit_tab(units, catalogue)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
