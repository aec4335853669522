"""Texture page: a new texture from a source, by Gram matrices of a perceptual network (Gatys et al. 2015)
beside the non-neural nearest-neighbour sampling of Efros & Leung 1999, with both runtimes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from client.http import TechniqueInfo
from convlens.schema import SynthesisResponse
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Texture", ":material/texture:"  # how the sidebar lists this page (dashboard.navigation)

# Seconds per step and result pixel before this session has a run of its own: 50 L-BFGS steps of a 128² Gram
# texture with the random-weight VGG took 2.4–8.7 s on the shared 2-core machine, one torch thread (as the
# server's long-job workers run), depending on the other jobs — the slow end; a VGG-19 step measured 5.4× a
# random VGG step at 128².
REFERENCE_RATE = 1e-5
VGG19_SLOWER = 5
RATES = "texture_rates"  # session state: the technique's seconds per step and pixel in its last run here
GRAM_REDUCTION = "gram_reduction"  # the declared scalar the caption's "Gram loss −x %" shows


def estimate(info: TechniqueInfo, params: Mapping[str, Any]) -> str | None:
    """The expected run time of a technique with ``steps`` and ``size`` knobs (steps × size² × a rate), from
    its last run in this session or else the reference rate; None for a technique without those knobs."""
    steps, size = params.get("steps"), params.get("size")
    if not isinstance(steps, int) or not isinstance(size, int):
        return None
    measured = st.session_state.get(RATES, {}).get(info.name)
    seconds = steps * size * size * (measured or REFERENCE_RATE)
    work = f"{steps} steps of a {size}×{size} image"
    if measured:
        return f"Estimated time: about {seconds:.0f} s ({work}, at the rate of your last run)."
    return (f"Estimated time: about {seconds:.0f} s ({work} with the random-weight VGG on the shared 2-core "
            f"server; about {VGG19_SLOWER}× that with VGG-19, and more while other jobs run).")


def remember_rate(info: TechniqueInfo, params: Mapping[str, Any], result: SynthesisResponse) -> None:
    """Keep the seconds per step and pixel a finished (not stopped) run took, for the next estimate."""
    steps, size = params.get("steps"), params.get("size")
    seconds = float(state.result(info, result).get("scalars", "seconds", 0.0))
    if isinstance(steps, int) and isinstance(size, int) and seconds > 0 and not result.scalars.get("cancelled"):
        st.session_state.setdefault(RATES, {})[info.name] = seconds / (steps * size * size)


def gram_words(info: TechniqueInfo, result: SynthesisResponse) -> str | None:
    """What the caption's "Gram loss −99.9 %" means, in words; None for a technique without it."""
    if info.outputs.find("scalars", GRAM_REDUCTION) is None:
        return None
    reduction = state.result(info, result).get("scalars", GRAM_REDUCTION)
    if reduction is None:
        return None
    closer = 1 / (1 - reduction) if reduction < 1 else float("inf")
    return (f"Gram loss −{reduction:.1%}: the result's Gram matrices — which of the network's channels fire "
            f"together, and how strongly: the texture statistics of Gatys et al. 2015 — are {closer:,.0f}× "
            "closer to the source's than those of the noise the synthesis started from.")


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
            expected = estimate(info, params)
            if expected:
                st.caption(expected)
            result = synthesis_view.run(info, {info.inputs[0]: image}, params, info.name,
                                        label=f"Synthesise ({info.title})")
            if result is None:
                continue
            remember_rate(info, params, result)
            shown = synthesis_view.primary(info, result)
            st.image(widgets.png(shown.value), width="stretch", caption=shown.caption)
            words = gram_words(info, result)
            if words:
                st.caption(words)
            synthesis_view.network_note(result)
            synthesis_view.download(result, shown.key, f"{Path(name).stem}_{info.name}", info.name)
            synthesis_view.history_chart(result, info.name)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
