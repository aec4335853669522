"""Texture page: a new texture from a source, by Gram matrices of a perceptual network (Gatys et al. 2015)
beside the non-neural nearest-neighbour sampling of Efros & Leung 1999, with both runtimes."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import synthesis_view, widgets

TITLE, ICON = "Texture", ":material/texture:"  # how the sidebar lists this page (dashboard.navigation)


def page() -> None:
    st.header("Texture synthesis")
    st.caption("Left: match the Gram matrices of several layers (Gatys, Ecker & Bethge 2015). Right: grow the "
               "texture pixel by pixel from the best-matching source neighbourhoods (Efros & Leung 1999).")
    served = synthesis_view.served(__file__)
    if served is None:
        return
    chosen = widgets.choose_image(f"{served[0].name}_", "Source texture", collection="textures")
    if chosen is None:
        return
    name, image = chosen
    st.image(image, caption=f"source: {name}", width=160)
    for column, info in zip(st.columns(len(served)), served, strict=True):  # side by side, in registry order
        with column:
            st.subheader(info.title)
            with st.expander("Settings"):
                params = widgets.param_controls(info, info.name)
            result = synthesis_view.run(info, {info.inputs[0]: image}, params, info.name,
                                        label=f"Synthesise ({info.title})")
            if result is None:
                continue
            shown = synthesis_view.primary(info, result)
            st.image(widgets.png(shown.value), width="stretch", caption=shown.caption)
            synthesis_view.network_note(result)
            synthesis_view.download(result, shown.key, f"{Path(name).stem}_{info.name}", info.name)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
