"""Style page: Gatys et al. 2016's neural style transfer with blended styles, style scale and colour
preservation, and the side-by-side comparison grid (content/style ratios × style scales or blends)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from convlens.schema import MAX_STYLES, SynthesisResponse  # noqa: E402
from dashboard import synthesis_view, widgets  # noqa: E402


def pick_styles(key: str, most: int) -> list[tuple[str, bytes]]:
    count = int(st.number_input("Style images", 1, most, 1, key=f"{key}_count")) if most > 1 else 1
    styles = []
    for k in range(count):
        chosen = widgets.choose_image(f"{key}_style{k}_", f"Style {k + 1}", collection="styles", index=k)
        if chosen is not None:
            styles.append(chosen)
    return styles


def style_inputs(content: bytes, styles: list[tuple[str, bytes]]) -> dict[str, bytes]:
    names = ["style", *(f"style_{k}" for k in range(2, MAX_STYLES + 1))]
    return {"content": content, **{names[k]: data for k, (_, data) in enumerate(styles)}}


def transfer_tab(content: tuple[str, bytes]) -> None:
    info = synthesis_view.technique("style")
    if info is None:
        return
    left, right = st.columns([1, 2])
    with left:
        styles = pick_styles("style", MAX_STYLES)
        params: dict[str, Any] = {}
        if len(styles) > 1:
            st.caption("Blend: each style's share of the Gram targets")
            raw = [st.slider(f"{name}", 0.0, 1.0, 1.0 / len(styles), 0.05, key=f"blend_{k}")
                   for k, (name, _) in enumerate(styles)]
            total = sum(raw) or 1.0
            params["style_blend"] = [w / total for w in raw]
        with st.expander("Weights, style scale, colour, steps"):
            params.update(widgets.param_controls(info, "style"))
    if len(styles) == 0:
        return
    with right:
        result = synthesis_view.run(info, style_inputs(content[1], styles), params, "style", label="Transfer style")
        if result is None:
            return
        synthesis_view.before_after(result, "content", f"{result.scalars['seconds']:.1f} s · style loss "
                                                       f"{result.scalars['style_loss']:.3g} · content loss "
                                                       f"{result.scalars['content_loss']:.3g}",
                                    Path(content[0]).stem + "_styled", "style")


def loss_chart(result: SynthesisResponse, rows: list[str], columns: list[str]) -> go.Figure:
    """Style loss of each cell: one line per column, along the rows (the style weight rises downwards)."""
    fig = go.Figure()
    for c, column in enumerate(columns):
        fig.add_trace(go.Scatter(x=rows, y=[result.scalars[f"style_loss_{r}_{c}"] for r in range(len(rows))],
                                 mode="lines+markers", name=column))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Style loss per cell",
                      xaxis_title="content/style ratio", yaxis_type="log")
    return fig


def grid_tab(content: tuple[str, bytes]) -> None:
    info = synthesis_view.technique("style_grid")
    if info is None:
        return
    left, right = st.columns([1, 2])
    with left:
        styles = pick_styles("grid", 2)
        sweep = st.radio("Columns", ["style scale", "blend of two styles"], horizontal=True, key="grid_sweep")
        params: dict[str, Any] = {"columns": "scale" if sweep == "style scale" else "blend"}
        if params["columns"] == "blend" and len(styles) != 2:
            st.info("A blend sweep needs two style images: set “Style images” to 2.")
            return
        with st.expander("Rows, columns and steps", expanded=True):
            params.update(widgets.param_controls(info, "grid", skip=("columns",)))
    if not styles:
        return
    with right:
        result = synthesis_view.run(info, style_inputs(content[1], styles), params, "grid",
                                    label="Compute the grid")
        if result is None:
            return
        st.image(widgets.png(result.images["result"]), width="stretch",
                 caption=f"rows — {result.labels['rows']}; columns — {result.labels['columns']}")
        cached = int(result.scalars.get("cached_cells", 0))
        st.caption(f"{int(result.scalars['cells'])} cells, {cached} from the cache")
        synthesis_view.network_note(result)
        synthesis_view.download(result, "result", Path(content[0]).stem + "_grid", "grid", "Download the whole grid")
        rows = result.labels["rows"].split(": ", 1)[1].split(", ")
        columns = result.labels["columns"].split(": ", 1)[1].split(", ")
        st.plotly_chart(loss_chart(result, rows, columns), width="stretch", key="grid_losses")
        with st.expander("Each cell"):
            for r, ratio in enumerate(rows):
                for c, column in zip(st.columns(len(columns)), columns, strict=True):
                    with c:
                        cell = f"cell_{r}_{columns.index(column)}"
                        st.image(widgets.png(result.images[cell]), caption=f"ratio {ratio} · {column}",
                                 width="stretch")
                        synthesis_view.download(result, cell, Path(content[0]).stem, "grid", "Download")


def page() -> None:
    st.header("Style transfer")
    st.caption("Gatys, Ecker & Bethge 2016: match the content's features at one layer and the style's Gram "
               "matrices at several. The perceptual network is VGG-19 when its ImageNet weights are installed, "
               "else a VGG-style network with fixed random weights (He, Wang & Hopcroft 2016) — every result "
               "says which.")
    content = widgets.choose_image("content_", "Content", collection="photos")
    if content is None:
        return
    st.image(content[1], caption=f"content: {content[0]}", width=160)
    transfer, grid = st.tabs(["Transfer", "Comparison grid"])
    with transfer:
        transfer_tab(content)
    with grid:
        grid_tab(content)


page()
