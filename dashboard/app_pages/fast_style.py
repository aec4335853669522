"""Fast style page: the built-in feed-forward style network (Johnson et al. 2016, conditional instance
normalisation of Dumoulin et al. 2017) — pick styles and blend weights and the result updates at once (one
forward pass, no new training) — beside Gatys et al. 2016's optimisation for the same content, styles and
weights, each with its time."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError, TechniqueInfo  # noqa: E402
from convlens.schema import MAX_STYLES, SynthesisResponse  # noqa: E402
from dashboard import state, synthesis_view, widgets  # noqa: E402

MAX_KEPT = 32
SIZES = (128, 192, 256, 384, 512)


def style_names(info: TechniqueInfo) -> list[str]:
    """The network's styles: the allow-list the server declares for ``params.style``."""
    declared = {p["name"]: p for p in info.params}
    return [str(c) for c in declared.get("style", {}).get("choices", [])]


def blend_controls(names: list[str]) -> dict[str, float] | None:
    chosen = st.multiselect("Styles", names, default=names[:1], key="fast_styles", max_selections=MAX_STYLES)
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
            kept[digest] = state.get_client().synthesis(info, {"content": content}, model=model, params=params)
        except ApiError as exc:
            widgets.api_error(exc, "stylise")
            return None
        while len(kept) > MAX_KEPT:
            kept.pop(next(iter(kept)))
    return kept[digest]


def gatys_inputs(content: bytes, blend: dict[str, float]) -> tuple[dict[str, bytes], list[float]] | None:
    """The same styles as images for Gatys (from the shipped style samples), with their weights in order."""
    samples = state.samples("styles")
    paths = {name: samples.get(name.replace("_", " ")) for name in blend}
    if any(p is None for p in paths.values()):
        return None
    slots = ["style", *(f"style_{k}" for k in range(2, MAX_STYLES + 1))]
    images = {"content": content, **{slots[k]: p.read_bytes() for k, p in enumerate(paths.values()) if p}}
    return images, list(blend.values())


def page() -> None:
    st.header("Fast style transfer")
    st.caption("One forward pass of a small transformation network trained by this project on the built-in "
               "styles (one set of instance-norm scales and shifts per style; a blend mixes them), beside "
               "Gatys et al.'s per-image optimisation with the same content, styles and weights.")
    info = synthesis_view.technique("stylize")
    if info is None:
        return
    names = style_names(info)
    if not names:
        st.error("The server's stylize technique declares no styles.")
        return
    left, right = st.columns([1, 2])
    with left:
        content = widgets.choose_image("fast_content_", "Content", collection="photos")
        blend = blend_controls(names)
        strength = st.slider("Strength", 0.0, 1.0, 1.0, 0.05, key="fast_strength",
                             help="0 shows the content, 1 the fully stylised image")
        size = st.select_slider("Size (longer side, px)", SIZES, value=256, key="fast_size")
    if content is None or blend is None:
        return
    with right:
        fast = fast_result(info, content[1], {"blend": blend, "strength": strength, "size": size})
        gatys_info = synthesis_view.technique("style")
        gatys = None
        prepared = gatys_inputs(content[1], blend)
        a, b, c = st.columns(3)
        a.image(content[1], caption=f"content: {content[0]}", width="stretch")
        if fast is not None:
            b.image(widgets.png(fast.images["result"]), width="stretch",
                    caption=f"fast · {fast.scalars['seconds'] * 1e3:.0f} ms forward, {fast.elapsed_ms:.0f} ms on "
                            f"the server · {fast.labels.get('styles', '')}")
        with c:
            if gatys_info is None or prepared is None:
                st.info("Gatys needs each style's image; a style without a shipped sample has none.")
            else:
                gatys = synthesis_view.run(gatys_info, prepared[0], {"style_blend": prepared[1], "size": size},
                                           "fast_gatys", label="Run Gatys for comparison")
                if gatys is not None:
                    st.image(widgets.png(gatys.images["result"]), width="stretch",
                             caption=f"Gatys · {gatys.scalars['seconds']:.1f} s, {int(gatys.scalars['steps'])} "
                                     f"steps · style loss {gatys.scalars['style_loss']:.3g}")
        if fast is not None and gatys is not None and fast.scalars["seconds"] > 0:
            st.metric("Fast is faster by", f"{gatys.scalars['seconds'] / fast.scalars['seconds']:.0f}×")
        if fast is not None:
            synthesis_view.network_note(fast)
            synthesis_view.download(fast, "result", Path(content[0]).stem + "_fast", "fast")


page()
