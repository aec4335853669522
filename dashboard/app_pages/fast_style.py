"""Fast style page: the built-in feed-forward style network (Johnson et al. 2016, conditional instance
normalisation of Dumoulin et al. 2017) — pick styles and blend weights and the result updates at once (one
forward pass, no new training) — beside Gatys et al. 2016's optimisation for the same content, styles and
weights, each with its time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import streamlit as st

from client.http import ApiError, TechniqueInfo
from client.results import Result
from convlens.schema import MAX_STYLES, SynthesisResponse
from dashboard import state, synthesis_view, widgets
from dashboard.app_pages import style as style_page

TITLE, ICON = "Fast style", ":material/bolt:"  # how the sidebar lists this page (dashboard.navigation)

MAX_KEPT = 32
SIZES = (128, 192, 256, 384, 512)
# The first view: the built-in network's first style, hubble, is a near-black deep field whose Gram statistics
# make every result near-black, and at strength 1 its style term leaves the layout faint for every style (its card,
# Limitations). coffee at 0.7 keeps the astronaut plain (blurred-luminance correlation 0.89 with the content,
# mean brightness 0.41 against 0.45) in the network's own orange-and-brown strokes.
DEFAULT_STYLE, DEFAULT_STRENGTH = "coffee", 0.7
GATYS_LABEL = "Run Gatys"  # fits a third of the right-hand column; the caption above says what it compares


def style_names(info: TechniqueInfo) -> list[str]:
    """The network's styles: the allow-list the server declares for its one choice param."""
    return [str(c) for p in info.params for c in p.get("choices", [])]


def blend_controls(names: list[str]) -> dict[str, float] | None:
    default = [DEFAULT_STYLE] if DEFAULT_STYLE in names else names[:1]
    chosen = st.multiselect("Styles", names, default=default, key="fast_styles", max_selections=MAX_STYLES)
    if not chosen:
        st.info("Pick at least one style.")
        return None
    if len(chosen) == 1:
        return {chosen[0]: 1.0}
    st.caption("Blend: each style's share of the network's normalisation parameters (normalised to sum to 1)")
    raw = {name: st.slider(name, 0.0, 1.0, 1.0 / len(chosen), 0.05, key=f"fast_weight_{name}") for name in chosen}
    total = sum(raw.values())
    if total <= 0:
        st.warning("All weights are zero.")
        return None
    return {name: round(w / total, 6) for name, w in raw.items()}


def fast_result(info: TechniqueInfo, content: bytes, params: dict[str, Any]) -> SynthesisResponse | None:
    """The stylised content for these settings: asked once per settings (it takes a fraction of a second)."""
    model = state.selected_model()
    digest = hashlib.sha256(json.dumps([params, model], sort_keys=True).encode() + content).hexdigest()
    kept: dict[str, SynthesisResponse] = st.session_state.setdefault("fast_style_results", {})
    if digest not in kept:
        try:
            kept[digest] = state.get_client().synthesis(info, {info.inputs[0]: content}, model=model, params=params)
        except ApiError as exc:
            widgets.api_error(exc, "stylise")
            return None
        while len(kept) > MAX_KEPT:
            kept.pop(next(iter(kept)))
    return kept[digest]


def gatys_inputs(gatys: TechniqueInfo, content: bytes, blend: dict[str, float]
                 ) -> tuple[dict[str, bytes], list[float]] | None:
    """The same styles as images for Gatys (from the shipped style samples), with their weights in order."""
    samples = state.samples("styles")
    paths = {name: samples.get(name.replace("_", " ")) for name in blend}
    if any(p is None for p in paths.values()):
        return None
    styles = [(name, p.read_bytes()) for name, p in paths.items() if p]
    return style_page.style_inputs(gatys, content, styles), list(blend.values())


def show_fast(column: Any, info: TechniqueInfo, fast: SynthesisResponse) -> None:
    result = state.result(info, fast)
    column.image(widgets.png(synthesis_view.primary(info, fast).value), width="stretch",
                 caption=f"fast · {result.scalar('seconds') * 1e3:.0f} ms forward, {fast.elapsed_ms:.0f} ms on "
                         f"the server · {result.label('styles')} · strength {result.scalar('strength'):.2f}")


def show_gatys(gatys_info: TechniqueInfo, prepared: tuple[dict[str, bytes], list[float]] | None, size: int
               ) -> Result | None:
    """Gatys for the same content, styles and weights, on request."""
    if prepared is None:
        st.info("Gatys needs each style's image; a style without a shipped sample has none.")
        return None
    gatys = synthesis_view.run(gatys_info, prepared[0], {"style_blend": prepared[1], "size": size}, "fast_gatys",
                               label=GATYS_LABEL)
    if gatys is None:
        return None
    result = state.result(gatys_info, gatys)
    st.image(widgets.png(synthesis_view.primary(gatys_info, gatys).value), width="stretch",
             caption=f"Gatys · {result.scalar('seconds'):.1f} s, {int(result.scalar('steps'))} steps · style loss "
                     f"{result.scalar('style_loss'):.3g}")
    return result


def speedup(forward: float, gatys: Result) -> None:
    """The forward pass against Gatys's optimisation, both as timed on the server (no transfer, no queue)."""
    if forward <= 0:
        return
    optimisation = gatys.scalar("seconds")
    st.metric("Fast forward pass vs Gatys", f"{optimisation / forward:.0f}× faster",
              help=f"Gatys's {optimisation:.1f} s of optimisation ({int(gatys.scalar('steps'))} steps) ÷ the "
                   f"network's {forward * 1e3:.0f} ms forward pass, both timed on the server")


def page() -> None:
    st.header("Fast style transfer")
    st.caption("One forward pass of a small transformation network trained by this project on the built-in "
               "styles (one set of instance-norm scales and shifts per style; a blend mixes them), beside "
               "Gatys et al.'s per-image optimisation with the same content, styles and weights.")
    found, gatys_served = synthesis_view.served(__file__), synthesis_view.served(style_page.__file__)
    if found is None:
        return
    [info] = found
    names = style_names(info)
    if not names:
        st.error(f"The server's {info.title} declares no styles.")
        return
    left, right = st.columns([1, 2])
    with left:
        content = widgets.choose_image("fast_content_", "Content", collection="photos")
        blend = blend_controls(names)
        strength = st.slider("Strength", 0.0, 1.0, DEFAULT_STRENGTH, 0.05, key="fast_strength",
                             help="The share of the stylised image mixed with the content: 0 shows the content, "
                                  "1 the network's output alone")
        size = st.select_slider("Size (longer side, px)", SIZES, value=256, key="fast_size")
    if content is None or blend is None:
        return
    with right:
        fast = fast_result(info, content[1], {"blend": blend, "strength": strength, "size": size})
        gatys_info = style_page.split(gatys_served)[0] if gatys_served else None
        a, b, c = st.columns(3)
        a.image(content[1], caption=f"content: {content[0]}", width="stretch")
        if fast is not None:
            show_fast(b, info, fast)
        with c:
            gatys = None if gatys_info is None else show_gatys(gatys_info, gatys_inputs(gatys_info, content[1], blend),
                                                              size)
        if fast is not None and gatys is not None:
            speedup(state.result(info, fast).scalar("seconds"), gatys)
        if fast is not None:
            synthesis_view.network_note(fast)
            synthesis_view.download(fast, synthesis_view.primary(info, fast).key, Path(content[0]).stem + "_fast",
                                    "fast")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
