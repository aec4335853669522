"""Neighbours page (CS231n lecture 12; Krizhevsky et al. 2012, Fig. 4): the nearest dataset images to a
query by CNN code and by raw pixels, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError  # noqa: E402
from dashboard import state, widgets  # noqa: E402


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
    params: dict[str, object] = {"dataset": dataset, "k": k}
    image = None
    if source == "Upload":
        upload = st.file_uploader("Query image", type=state.UPLOAD_TYPES, key="nb_upload")
        if upload is None:
            st.info("Upload an image to search the dataset with.")
            return
        image = upload.getvalue()
    else:
        params["query"] = int(st.number_input("Image index", 0, max(0, sizes[dataset] - 1), 0, key="nb_query"))
    try:
        result = state.dataset("neighbours", state.selected_model(), image=image, **params)
    except ApiError as exc:
        widgets.api_error(exc, "find the neighbours")
        return
    st.image(widgets.png(result.images["query"]), caption="query", width=160)
    for space, title in (("code", "By CNN code"), ("pixel", "By pixels")):
        st.subheader(title)
        if space in result.images:
            st.image(widgets.png(result.images[space]), width="stretch")
            found = [item for item in result.items if item["space"] == space]
            st.caption(" · ".join(f"#{it['rank'] + 1} {it['label']} ({it['distance']:.2f})" for it in found))
            same = result.scalars.get(f"{space}_same_label")
            if same is not None:
                st.metric(f"{title}: same label as the query", f"{same:.0%}")


page()
