"""Neighbours page (CS231n lecture 12; Krizhevsky et al. 2012, Fig. 4): the nearest dataset images to a
query by CNN code and by raw pixels, side by side."""

from __future__ import annotations

from typing import Any

import streamlit as st

from client.http import ApiError
from convlens.schema import DATASET_PARAM
from dashboard import state, widgets

TITLE, ICON = "Neighbours", ":material/join:"  # how the sidebar lists this page (dashboard.navigation)


SPACE_TITLES = ("By CNN code", "By pixels")  # the titles of the declared neighbour grids, in declared order


def page() -> None:
    st.header("Neighbours")
    st.caption("Code space vs pixel space: CNN-code neighbours share what the network sees (the class), "
               "pixel neighbours share colours and layout.")
    rows = widgets.dataset_rows()
    if rows is None:
        return
    sizes = {r["name"]: int(r["images"]) for r in rows}
    left, right = st.columns(2)
    dataset = left.selectbox("Dataset", list(sizes), key="nb_dataset")
    k = right.slider("Neighbours", 1, 32, 8, key="nb_k")
    source = st.radio("Query", ["Dataset image", "Upload"], horizontal=True, key="nb_source")
    params: dict[str, Any] = {DATASET_PARAM: dataset, "k": k}
    image = None
    if source == "Upload":
        upload = st.file_uploader("Query image", type=state.UPLOAD_TYPES, key="nb_upload")
        if upload is None:
            st.info("Upload an image to search the dataset with.")
            return
        image = upload.getvalue()
    else:
        params["query"] = int(st.number_input("Image index", 0, max(0, sizes[dataset] - 1), 0, key="nb_query"))
    [info] = state.served_by(__file__)
    try:
        response = state.dataset(info.name, state.selected_model(), image=image, **params)
    except ApiError as exc:
        widgets.api_error(exc, "find the neighbours")
        return
    result = state.result(info, response)
    [query, *spaces] = info.outputs.of("images")  # the query, then one grid per space (declared order)
    st.image(widgets.png(result.image(query)), caption=query.caption, width=160)
    for space, title in zip(spaces, SPACE_TITLES, strict=True):
        st.subheader(title)
        if result.has("images", space):
            st.image(widgets.png(result.image(space)), width="stretch")
            found = [item for item in result.items() if item["space"] == space.name]
            st.caption(" · ".join(f"#{it['rank'] + 1} {it['label']} ({it['distance']:.2f})" for it in found))
            same = result.get("scalars", f"{space.name}_same_label")
            if same is not None:
                st.metric(f"{title}: same label as the query", f"{same:.0%}")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
