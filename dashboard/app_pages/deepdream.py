"""DeepDream page: amplify what a layer already sees in an image (Mordvintsev et al. 2015)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("DeepDream")
    st.caption("Gradient ascent on the L2 norm of a layer's activations, over octaves with jitter "
               "(Mordvintsev, Olah & Tyka 2015).")
    info = synthesis_view.technique("deepdream")
    if info is None:
        return
    try:
        catalogue = state.layers(state.selected_model())
    except ApiError as exc:
        widgets.api_error(exc, "read the layer catalogue")
        return
    left, right = st.columns([1, 2])
    with left:
        chosen = widgets.choose_image("dream_", collection="photos")
        spatial = [r.name for r in catalogue.layers if r.spatial]
        layer = st.selectbox("Layer", spatial, index=len(spatial) // 2, key="dream_layer")
        with st.expander("Octaves, strength and steps"):
            params = widgets.param_controls(info, "deepdream")
    if chosen is None:
        return
    name, image = chosen
    with right:
        result = synthesis_view.run(info, {"image": image}, params, "deepdream", layer=layer, label="Dream")
        if result is None:
            return
        a, b = st.columns(2)
        a.image(widgets.png(result.images["original"]), caption="original", width="stretch")
        b.image(widgets.png(result.images["result"]), width="stretch",
                caption=f"dreamed at {result.layer} ({int(result.scalars['octaves'])} octaves)")
        synthesis_view.network_note(result)
        synthesis_view.download(result, "result", Path(name).stem + "_dream", "deepdream")
        synthesis_view.history_chart(result, "deepdream")


page()
