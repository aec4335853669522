"""Inversion page: what does a layer still know about the image? Reconstructions from one layer's features,
or from every depth at once (Mahendran & Vedaldi 2015)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("Feature inversion")
    st.caption("Find an image whose features at a layer match the original's, with a total-variation "
               "prior (Mahendran & Vedaldi 2015): shallow layers keep the pixels, deep ones only what matters "
               "for the class.")
    mode = st.radio("Reconstruct from", ["Shallow to deep (a row of layers)", "One layer"], horizontal=True,
                    key="inversion_mode")
    ladder = mode.startswith("Shallow")
    name = "inversion_ladder" if ladder else "inversion"
    info = synthesis_view.technique(name)
    if info is None:
        return
    try:
        catalogue = state.layers(state.selected_model())
    except ApiError as exc:
        widgets.api_error(exc, "read the layer catalogue")
        return
    left, right = st.columns([1, 2])
    with left:
        chosen = widgets.choose_image("inversion_")
        layer = None
        if not ladder:
            spatial = [r.name for r in catalogue.layers if r.spatial]
            layer = st.selectbox("Layer", spatial, index=len(spatial) // 2, key="inversion_layer")
        with st.expander("Settings"):
            params = widgets.param_controls(info, name)
    if chosen is None:
        return
    file_name, image = chosen
    with right:
        result = synthesis_view.run(info, {"image": image}, params, name, layer=layer, label="Invert")
        if result is None:
            return
        if ladder:
            layers = result.labels.get("layers", "")
            st.image(widgets.png(result.images["result"]), width="stretch",
                     caption=f"original, then reconstructions from {layers}")
            fidelity = {k.removeprefix("psnr_"): v for k, v in result.scalars.items() if k.startswith("psnr_")}
            st.bar_chart(fidelity, x_label="layer", y_label="PSNR (dB)", height=220)
        else:
            a, b = st.columns(2)
            a.image(widgets.png(result.images["original"]), caption="original", width="stretch")
            b.image(widgets.png(result.images["result"]), width="stretch",
                    caption=f"from {result.layer}: PSNR {result.scalars['psnr']:.1f} dB, "
                            f"SSIM {result.scalars['ssim']:.2f}")
        synthesis_view.network_note(result)
        synthesis_view.download(result, "result", Path(file_name).stem + "_inversion", name)
        synthesis_view.history_chart(result, name)


page()
