"""Top patches page (Zeiler & Fergus 2014; CS231n lecture 12): for a layer and channel, the dataset
patches that excite it most, each cut to the unit's receptive field from the layer catalogue."""

from __future__ import annotations

import base64

import streamlit as st

from client.http import ApiError
from dashboard import state, widgets

TITLE, ICON = "Top patches", ":material/view_module:"  # how the sidebar lists this page (dashboard.navigation)


def page() -> None:
    st.header("Top patches")
    st.caption("What makes a unit fire: its strongest locations over the whole dataset, each cropped to the "
               "unit's receptive field (grey where the field leaves the image). One pass ranks every channel.")
    model = state.selected_model()
    [info] = state.served_by(__file__)
    rows = widgets.dataset_rows()
    if rows is None:
        return
    names = [d["name"] for d in rows]
    try:
        catalogue = state.layers(model)
    except ApiError as exc:
        widgets.api_error(exc, f"list the layers of {model}")
        return
    by_name = {r.name: r for r in catalogue.layers if r.spatial}
    layers = list(by_name)
    left, mid, right = st.columns(3)
    dataset = left.selectbox("Dataset", names, key="tp_dataset")
    layer = mid.selectbox("Layer", layers, key="tp_layer",
                          index=layers.index(catalogue.default_cam_layer) if catalogue.default_cam_layer in layers
                          else 0)
    k = right.slider("Patches", 1, 36, 9, key="tp_k")
    row = by_name[str(layer)]
    st.caption(f"`{layer}`: {row.output_shape[0]} channels · receptive field {row.receptive_field} px · "
               f"stride {row.stride} px")
    overview = st.toggle("Overview: every channel's strongest patch", value=False, key="tp_overview")
    channel = None if overview else int(st.number_input("Channel", 0, row.output_shape[0] - 1, 0, key="tp_channel"))
    with st.spinner("Ranking every channel over the dataset (cached after the first time)…"):
        try:
            response = state.dataset(info.name, model, layer=layer, dataset=dataset, channel=channel, k=k)
        except ApiError as exc:
            widgets.api_error(exc, "find the top patches")
            return
    result = state.result(info, response)
    shown = list(result.images())
    if not shown:
        st.info("No patches: the dataset is empty.")
        return
    data = base64.b64decode(shown[0].value)
    st.image(data, width="stretch")
    st.download_button("Download grid.png", data, file_name=f"{dataset}-{layer}-{channel}.png", mime="image/png",
                       key="tp_download")
    if channel is not None:
        st.caption(" · ".join(f"#{it['rank'] + 1} {it['label']} ({it['activation']:.2f})" for it in result.items()))


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
