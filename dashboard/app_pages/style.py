"""Style page: Gatys et al. 2016's neural style transfer with blended styles, style scale and colour
preservation, and the side-by-side comparison grid (content/style ratios × style scales or blends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from client.http import TechniqueInfo
from client.results import Result
from convlens.schema import SynthesisResponse
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Style", ":material/palette:"  # how the sidebar lists this page (dashboard.navigation)


GRID = "grid"  # the comparison grid tab's widget keys


def pick_styles(key: str, most: int) -> list[tuple[str, bytes]]:
    count = int(st.number_input("Style images", 1, most, 1, key=f"{key}_count")) if most > 1 else 1
    styles = []
    for k in range(count):
        chosen = widgets.choose_image(f"{key}_style{k}_", f"Style {k + 1}", collection="styles", index=k)
        if chosen is not None:
            styles.append(chosen)
    return styles


def style_inputs(info: TechniqueInfo, content: bytes, styles: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The declared inputs: the content first, then one slot per style (the required one, then the optional)."""
    content_slot, *slots = (*info.inputs, *info.optional_inputs)
    return {content_slot: content, **{slots[k]: data for k, (_, data) in enumerate(styles)}}


def split(served: list[TechniqueInfo]) -> tuple[TechniqueInfo, TechniqueInfo]:
    """(the transfer, the comparison grid): the grid is the one whose primary image is a grid."""
    [grid] = [t for t in served if synthesis_view.makes_grid(t)]
    [transfer] = [t for t in served if t is not grid]
    return transfer, grid


def transfer_tab(info: TechniqueInfo, content: tuple[str, bytes]) -> None:
    left, right = st.columns([1, 2])
    with left:
        styles = pick_styles(info.name, 1 + len(info.optional_inputs))
        params: dict[str, Any] = {}
        if len(styles) > 1:
            st.caption("Blend: each style's share of the Gram targets")
            raw = [st.slider(f"{name}", 0.0, 1.0, 1.0 / len(styles), 0.05, key=f"blend_{k}")
                   for k, (name, _) in enumerate(styles)]
            total = sum(raw) or 1.0
            params["style_blend"] = [w / total for w in raw]
        with st.expander("Weights, style scale, colour, steps"):
            params.update(widgets.param_controls(info, info.name))
    if len(styles) == 0:
        return
    with right:
        result = synthesis_view.run(info, style_inputs(info, content[1], styles), params, info.name,
                                    label="Transfer style")
        if result is None:
            return
        synthesis_view.before_after(info, result, synthesis_view.primary(info, result).caption,
                                    Path(content[0]).stem + "_styled", info.name)


def loss_chart(result: Result, rows: list[str], columns: list[str]) -> go.Figure:
    """Style loss of each cell: one line per column, along the rows (the style weight rises downwards)."""
    losses = {(int(s.placeholders["row"]), int(s.placeholders["col"])): s.value
              for s in result.present("scalars", "style_loss_{row}_{col}")}
    fig = go.Figure()
    for c, column in enumerate(columns):
        fig.add_trace(go.Scatter(x=rows, y=[losses[r, c] for r in range(len(rows))], mode="lines+markers",
                                 name=column))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Style loss per cell",
                      xaxis_title="content/style ratio", yaxis=synthesis_view.log_axis(list(losses.values())))
    return fig


def grid_tab(info: TechniqueInfo, content: tuple[str, bytes]) -> None:
    left, right = st.columns([1, 2])
    with left:
        styles = pick_styles(GRID, 1 + len(info.optional_inputs))
        sweep = st.radio("Columns", ["style scale", "blend of two styles"], horizontal=True, key="grid_sweep")
        params: dict[str, Any] = {"columns": "scale" if sweep == "style scale" else "blend"}
        if params["columns"] == "blend" and len(styles) != 2:
            st.info("A blend sweep needs two style images: set “Style images” to 2.")
            return
        with st.expander("Rows, columns and steps", expanded=True):
            params.update(widgets.param_controls(info, GRID, skip=("columns",)))
    if not styles:
        return
    with right:
        response = synthesis_view.run(info, style_inputs(info, content[1], styles), params, GRID,
                                      label="Compute the grid")
        if response is not None:
            show_grid(info, response, Path(content[0]).stem)


def show_grid(info: TechniqueInfo, response: SynthesisResponse, stem: str) -> None:
    """The whole grid, its loss chart and each cell (the declared cell images, by their row and column)."""
    result = state.result(info, response)
    shown = synthesis_view.primary(info, response)
    st.image(widgets.png(shown.value), width="stretch",
             caption=f"rows — {result.label('rows')}; columns — {result.label('columns')}")
    st.caption(f"{int(result.scalar('cells'))} cells, {int(result.scalar('cached_cells', 0))} from the cache")
    synthesis_view.network_note(response)
    synthesis_view.download(response, shown.key, stem + "_grid", GRID, "Download the whole grid")
    rows = result.label("rows").split(": ", 1)[1].split(", ")
    columns = result.label("columns").split(": ", 1)[1].split(", ")
    st.plotly_chart(loss_chart(result, rows, columns), width="stretch", key="grid_losses")
    cells = {(int(s.placeholders["row"]), int(s.placeholders["col"])): s for s in result.images()
             if {"row", "col"} <= set(s.placeholders)}
    with st.expander("Each cell"):
        for r, ratio in enumerate(rows):
            for c, (column, name) in enumerate(zip(st.columns(len(columns)), columns, strict=True)):
                with column:
                    cell = cells[r, c]
                    st.image(widgets.png(cell.value), caption=f"ratio {ratio} · {name}", width="stretch")
                    synthesis_view.download(response, cell.key, stem, GRID, "Download")


def page() -> None:
    st.header("Style transfer")
    st.caption("Gatys, Ecker & Bethge 2016: match the content's features at one layer and the style's Gram "
               "matrices at several. The perceptual network is VGG-19 when its ImageNet weights are installed, "
               "else a VGG-style network with fixed random weights (He, Wang & Hopcroft 2016) — every result "
               "says which.")
    served = synthesis_view.served(__file__)
    if served is None:
        return
    transfer, grid = split(served)
    content = widgets.choose_image("content_", "Content", collection="photos")
    if content is None:
        return
    st.image(content[1], caption=f"content: {content[0]}", width=160)
    transfer_pane, grid_pane = st.tabs(["Transfer", "Comparison grid"])
    with transfer_pane:
        transfer_tab(transfer, content)
    with grid_pane:
        grid_tab(grid, content)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
