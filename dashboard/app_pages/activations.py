"""Activations page: what every channel of a layer does with one image (Chollet §9.4.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from client.http import ApiError
from client.results import Result
from dashboard import state, widgets

TITLE, ICON = "Activations", ":material/grid_view:"  # how the sidebar lists this page (dashboard.navigation)


def tile(grid: Image.Image, item: dict[str, Any], height: int, width: int, pad: int) -> Image.Image:
    """Cut one tile out of the server's mosaic (its place is in the item)."""
    top, left = item["row"] * (height + pad), item["col"] * (width + pad)
    return grid.crop((left, top, left + width, top + height))


def grid_figure(grid: Image.Image, grid_b64: str, items: list[dict[str, Any]], height: int, width: int,
                pad: int) -> go.Figure:
    """The mosaic with one invisible marker per tile: hover for a channel's numbers, click to pick it."""
    xs = [it["col"] * (width + pad) + width / 2 for it in items]
    ys = [it["row"] * (height + pad) + height / 2 for it in items]
    text = [f"channel {it['channel']}<br>mean {it['mean']:.3g}, max {it['max']:.3g}"
            + ("<br>dead for this image" if it["dead"] else "") for it in items]
    fig = go.Figure(go.Image(source=f"data:image/png;base64,{grid_b64}"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", text=text, hoverinfo="text",
                             customdata=[it["channel"] for it in items],
                             marker=dict(size=max(8, min(height, width) * 0.8), opacity=0.01, symbol="square")))
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), height=min(900, grid.height * 2 + 20),
                      xaxis=dict(visible=False), yaxis=dict(visible=False), showlegend=False)
    return fig


def channel_scale(result: Result, item: dict[str, Any], normalize: str) -> None:
    """The colour bar of the tiles: each channel from its own smallest to its largest activation, or the whole
    layer's range for every tile (a dead channel's tile is the first colour)."""
    colormap = result.label("colormap", "") or "viridis"
    if normalize == "channel":
        low, high, title = float(item.get("min", 0.0)), float(item["max"]), f"channel {item['channel']}'s activations"
    else:
        low, high = result.scalar("layer_min", 0.0), result.scalar("layer_max", float(item["max"]))
        title = "activations (one scale for the whole layer)"
    st.plotly_chart(widgets.colour_bar(colormap, low, high, title), width="stretch",
                    config={"displayModeBar": False}, key="act_colour_bar")
    if normalize == "channel":
        st.caption("Each tile of the grid is scaled the same way, from its own smallest to its largest activation.")


def show_metrics(result: Result) -> None:
    m1, m2, m3 = st.columns(3)
    m1.metric("Channels", int(result.scalar("channels")))
    m2.metric("Dead for this image", int(result.scalar("dead_channels")), help="no unit of the channel is positive")
    m3.metric("Map size", f"{int(result.scalar('height'))}×{int(result.scalar('width'))}")


def page() -> None:
    st.header("Activations")
    st.caption("Every channel of one layer for one image, as Chollet §9.4.1 shows them. Hover a tile for its "
               "numbers, click it to see it large over the input.")
    model = state.selected_model()
    chosen = widgets.choose_image("act_")
    if chosen is None:
        return
    name, image = chosen
    try:
        catalogue = state.layers(model)
    except ApiError as exc:
        widgets.api_error(exc, "list the layers")
        return
    spatial = [r.name for r in catalogue.layers if r.spatial and len(r.output_shape) == 3]
    c1, c2, c3 = st.columns(3)
    layer = c1.selectbox("Layer", spatial, key="act_layer", index=spatial.index(catalogue.default_cam_layer)
                         if catalogue.default_cam_layer in spatial else len(spatial) - 1)
    sort = c2.radio("Order", ["channel", "mean"], horizontal=True, key="act_sort",
                    format_func=lambda s: "by channel" if s == "channel" else "by mean activation")
    normalize = c3.radio("Scale", ["channel", "layer"], horizontal=True, key="act_normalize",
                         format_func=lambda s: "each channel" if s == "channel" else "whole layer")
    [info] = state.served_by(__file__)
    endpoint, named = state.request_of(info)
    with st.spinner("Computing activations…"):
        try:
            response = state.grids(endpoint, image, model, layer, sort=sort, normalize=normalize, **named)
        except ApiError as exc:
            widgets.api_error(exc, "compute the activations")
            return
    result = state.result(info, response)
    show_metrics(result)
    items = result.items()
    grid_key = str(items[0]["grid"])
    grid_b64 = result.image(grid_key)
    grid = widgets.png(grid_b64)
    tiles = {s.declared.name: int(s.value) for s in result.present("scalars") if s.placeholders.get("grid") == grid_key}
    height, width, pad = tiles["{grid}_tile_height"], tiles["{grid}_tile_width"], int(result.scalar("grid_pad"))
    event = st.plotly_chart(grid_figure(grid, grid_b64, items, height, width, pad), key="act_grid",
                            on_select="rerun", selection_mode="points", width="stretch")
    picked = [p.get("customdata") for p in (event.selection.points if event and event.selection else [])]
    channels = [it["channel"] for it in items]
    if picked and picked[0] in channels:
        st.session_state["act_channel"] = picked[0]
    strongest = max(range(len(channels)), key=lambda k: items[k]["mean"])
    if st.session_state.get("act_channel") not in channels:
        st.session_state.pop("act_channel", None)
    channel = st.selectbox("Channel", channels, key="act_channel", index=strongest,
                           format_func=lambda c: f"{c} (mean {items[channels.index(c)]['mean']:.3g})")
    item = items[channels.index(channel)]
    base = widgets.png(next(s.value for s in result.images() if s.declared.kind == "picture"))
    heat = tile(grid, item, height, width, pad).resize(base.size, Image.Resampling.BILINEAR)
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="act_alpha")
    left, right = st.columns(2)
    left.image(Image.blend(base, heat, alpha), caption=f"{layer} channel {channel} over {name}", width="stretch")
    right.image(heat, caption=f"channel {channel} (mean {item['mean']:.3g}, max {item['max']:.3g})",
                width="stretch")
    with right:
        channel_scale(result, item, normalize)
    st.download_button("Download the grid", widgets.to_png_bytes(grid), file_name=f"{Path(name).stem}_{layer}.png",
                       mime="image/png", key="act_download")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
