"""Inversion page: what does a layer still know about the image? Reconstructions from one layer's features,
or from every depth at once (Mahendran & Vedaldi 2015)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("Feature inversion")
    st.caption("Find an image whose features at a layer match the original's, with a total-variation "
               "prior (Mahendran & Vedaldi 2015): shallow layers keep the pixels, deep ones only what matters "
               "for the class.")
    mode = st.radio("Reconstruct from", ["Shallow to deep (a row of layers)", "One layer"], horizontal=True,
                    key="inversion_mode")
    ladder = mode.startswith("Shallow")
    name = "inversion_ladder" if ladder else "inversion"
    found = synthesis_view.technique_and_layers(name)
    if found is None:
        return
    info, catalogue = found
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
            synthesis_view.finish(result, Path(file_name).stem + "_inversion", name)
        else:
            synthesis_view.before_after(result, "original", f"from {result.layer}: PSNR {result.scalars['psnr']:.1f} "
                                                            f"dB, SSIM {result.scalars['ssim']:.2f}",
                                        Path(file_name).stem + "_inversion", name)


page()
