"""Embedding page (CS231n lecture 12, "t-SNE of CNN codes"): every image of a dataset as one point of a
WebGL scatter (no cap below 100k points), coloured by label or predicted class; hovering a point shows its
image, clicking or lasso-selecting points shows the images; the map snapped to a grid of thumbnails can be
downloaded."""

from __future__ import annotations

import base64

import streamlit as st

from client.http import ApiError
from client.results import Result
from convlens.schema import DATASETS
from dashboard import state, widgets
from dashboard.hover_scatter import (
    hover_scatter,
    scatter_args,
    sheet_key,
    write_sheets_in_background,
)

TITLE, ICON = "Embedding", ":material/scatter_plot:"  # how the sidebar lists this page (dashboard.navigation)

PALETTE = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572", "#17bebb", "#c5283d", "#6d597a",
           "#3a5a40", "#ff9f1c", "#5e548e", "#2ec4b6", "#8d99ae", "#ef476f", "#118ab2")
MAX_SHOWN = 32
METHODS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}


def show_images(dataset: str, indices: list[int], model: str) -> None:
    chosen = indices[:MAX_SHOWN]
    try:
        thumbs = state.dataset(DATASETS, model, name=dataset, action="images",
                               indices=",".join(str(i) for i in chosen))
    except ApiError as exc:
        widgets.api_error(exc, "fetch the images")
        return
    result = state.result(state.technique(DATASETS), thumbs)
    by_index = {int(s.placeholders["index"]): s.value for s in result.images()}
    columns = st.columns(8)
    for k, item in enumerate(result.items()):
        with columns[k % 8]:
            st.image(widgets.png(by_index[item["index"]]), caption=f"{item['index']}: {item['label']}")


def hover_thumbnails(dataset: str, key: str, images: int, model: str) -> None:
    """Start writing the sprite sheets the hover shows thumbnails from (once per dataset content, on a
    background thread: the points are drawn and the page answers at once)."""
    client, info = state.get_client(), state.technique(DATASETS)

    def fetch(start: int, count: int, tile: int) -> str:
        out = client.dataset(info.name, model=model, params={
            "action": "sheet", "name": dataset, "start": start, "count": count, "size": tile})
        [sheet] = list(Result(out, info.outputs).images())
        return str(sheet.value)

    if write_sheets_in_background(key, images, fetch) is not None:
        st.caption("Thumbnails for the hover are being fetched: hovering shows images within seconds.")


def page() -> None:
    st.header("Embedding")
    st.caption("Each image's CNN code (the layer before the classifier) mapped to 2-D: images the network "
               "finds similar land close together. Hover a point to see its image; click or lasso points to see "
               "them all.")
    rows = widgets.dataset_rows()
    if rows is None:
        return
    names = [d["name"] for d in rows]
    by_name = {d["name"]: d for d in rows}
    model = state.selected_model()
    [info] = state.served_by(__file__)
    left, mid, right = st.columns(3)
    dataset = left.selectbox("Dataset", names, key="emb_dataset")
    method = mid.radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True, key="emb_method")
    colour_by = right.radio("Colour by", ["label", "predicted"], horizontal=True, key="emb_colour")
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="emb_seed"))
    response = widgets.followed_corpus(info, model, f"CNN codes of {dataset}, then {METHODS[method]}… "
                                       f"({widgets.FIRST_TIME})", f"CNN codes, then {METHODS[method]}",
                                       f"map {dataset}", dataset=dataset, projection=method, seed=seed)
    if response is None:
        return
    points = response.points or []
    result = state.result(info, response)
    codes_time = "cached" if result.scalar("codes_cached", 0) else f"{result.scalar('codes_seconds', 0.0):.1f} s"
    map_time = ("cached" if result.scalar("projection_cached", 0) else
                f"{result.scalar('projection_seconds', 0.0):.1f} s")
    st.caption(f"{len(points):,} images · codes of {result.scalar('dim', 0):.0f} dimensions at layer "
               f"`{response.layer}` · codes {codes_time} · map {map_time}")
    key = sheet_key(dataset, str(by_name[dataset].get("fingerprint", "")), len(points))
    chosen = hover_scatter(scatter_args(points, result.items(), colour_by, PALETTE, key), key="emb_chart")
    hover_thumbnails(dataset, key, len(points), model)
    if chosen:
        st.subheader(f"Selected: {len(chosen)} image{'s' if len(chosen) > 1 else ''}"
                     + (f" (first {MAX_SHOWN})" if len(chosen) > MAX_SHOWN else ""))
        show_images(dataset, chosen, model)
    with st.expander("Grid view: the map snapped to a grid of thumbnails", expanded=False):
        side = st.slider("Grid side", 8, 64, 24, 4, key="emb_grid")
        if st.button("Make the grid", key="emb_grid_go"):
            with st.spinner("Snapping to the grid…"):
                try:
                    grid = state.dataset(info.name, model, dataset=dataset, projection=method, seed=seed,
                                         grid=side)
                except ApiError as exc:
                    widgets.api_error(exc, "make the grid")
                    return
            data = base64.b64decode(state.result(info, grid).image("grid"))
            st.image(data, caption=f"{side}×{side} thumbnails", width="stretch")
            st.download_button("Download grid.png", data, file_name=f"{dataset}-{method}-grid.png",
                               mime="image/png", key="emb_grid_download")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
