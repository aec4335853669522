"""DeepDream page: amplify what a layer already sees in an image (Mordvintsev et al. 2015)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("DeepDream")
    st.caption("Gradient ascent on the L2 norm of a layer's activations, over octaves with jitter "
               "(Mordvintsev, Olah & Tyka 2015).")
    found = synthesis_view.technique_and_layers("deepdream")
    if found is None:
        return
    info, catalogue = found
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
        synthesis_view.before_after(result, "original",
                                    f"dreamed at {result.layer} ({int(result.scalars['octaves'])} octaves)",
                                    Path(name).stem + "_dream", "deepdream")


page()
