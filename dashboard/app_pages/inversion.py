"""Inversion page: what does a layer still know about the image? Reconstructions from one layer's features,
or from every depth at once (Mahendran & Vedaldi 2015)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from client.http import LayerCatalogue, TechniqueInfo
from convlens.schema import SynthesisResponse
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Inversion", ":material/flip:"  # how the sidebar lists this page (dashboard.navigation)


def page() -> None:
    st.header("Feature inversion")
    st.caption("Find an image whose features at a layer match the original's, with a total-variation "
               "prior (Mahendran & Vedaldi 2015): shallow layers keep the pixels, deep ones only what matters "
               "for the class.")
    found = synthesis_view.served_and_layers(__file__)
    if found is None:
        return
    served, catalogue = found
    [one] = [t for t in served if not synthesis_view.makes_grid(t)]  # the ladder's primary image is a row
    mode = st.radio("Reconstruct from", ["Shallow to deep (a row of layers)", "One layer"], horizontal=True,
                    key=f"{one.name}_mode")
    ladder = mode.startswith("Shallow")
    info = next(t for t in served if synthesis_view.makes_grid(t)) if ladder else one
    left, right = st.columns([1, 2])
    with left:
        chosen = widgets.choose_image(f"{one.name}_")
        layer = None
        if not ladder:
            spatial = [r.name for r in catalogue.layers if r.spatial]
            layer = st.selectbox("Layer", spatial, index=len(spatial) // 2, key=f"{one.name}_layer")
        with st.expander("Settings"):
            params = widgets.param_controls(info, info.name)
    if chosen is None:
        return
    file_name, image = chosen
    with right:
        result = synthesis_view.run(info, {info.inputs[0]: image}, params, info.name, layer=layer, label="Invert")
        if result is None:
            return
        stem = Path(file_name).stem + "_inversion"
        if ladder:
            show_ladder(info, result, stem, catalogue)
        else:
            shown = synthesis_view.primary(info, result)
            synthesis_view.before_after(info, result, f"from {result.layer}: {shown.caption}", stem, info.name)


def show_ladder(info: TechniqueInfo, result: SynthesisResponse, stem: str, catalogue: LayerCatalogue) -> None:
    """The row of reconstructions and the fidelity of each (the declared per-layer scalar in dB), shallow to
    deep."""
    shown = synthesis_view.primary(info, result)
    st.image(widgets.png(shown.value), width="stretch", caption=shown.caption)
    fidelity = next(d for d in info.outputs.of("scalars") if d.is_pattern and d.unit == "dB")
    values = {s.placeholders["layer"]: s.value for s in state.result(info, result).present("scalars", fidelity)}
    st.plotly_chart(widgets.layer_bars(values, catalogue, f"{fidelity.name.split('_')[0].upper()} ({fidelity.unit})"),
                    width="stretch", key=f"{info.name}_fidelity")
    synthesis_view.finish(info, result, stem, info.name)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
