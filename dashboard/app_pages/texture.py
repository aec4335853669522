"""Texture page: a new texture from a source, by Gram matrices of a perceptual network (Gatys et al. 2015)
beside the non-neural nearest-neighbour sampling of Efros & Leung 1999, with both runtimes."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("Texture synthesis")
    st.caption("Left: match the Gram matrices of several layers (Gatys, Ecker & Bethge 2015). Right: grow the "
               "texture pixel by pixel from the best-matching source neighbourhoods (Efros & Leung 1999).")
    gram, nearest = synthesis_view.technique("texture"), synthesis_view.technique("efros_leung")
    if gram is None or nearest is None:
        return
    chosen = widgets.choose_image("texture_", "Source texture", collection="textures")
    if chosen is None:
        return
    name, image = chosen
    st.image(image, caption=f"source: {name}", width=160)
    left, right = st.columns(2)
    for column, info, key in ((left, gram, "texture"), (right, nearest, "efros")):
        with column:
            st.subheader(info.title)
            with st.expander("Settings"):
                params = widgets.param_controls(info, key)
            result = synthesis_view.run(info, {"image": image}, params, key, label=f"Synthesise ({info.title})")
            if result is None:
                continue
            st.image(widgets.png(result.images["result"]), width="stretch",
                     caption=f"{result.scalars['seconds']:.1f} s" +
                             (f" · Gram loss −{result.scalars['gram_reduction']:.1%}"
                              if "gram_reduction" in result.scalars else ""))
            synthesis_view.network_note(result)
            synthesis_view.download(result, "result", f"{Path(name).stem}_{key}", key)


page()
