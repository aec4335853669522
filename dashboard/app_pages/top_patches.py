"""Top patches page (Zeiler & Fergus 2014; CS231n lecture 12): for a layer and channel, the dataset
patches that excite it most, each cut to the unit's receptive field from the layer catalogue."""

from __future__ import annotations

import base64
import math

import streamlit as st

from client.http import ApiError
from convlens.schema import PATCH_FIELD_SHARE, patch_layer
from dashboard import state, widgets

TITLE, ICON = "Top patches", ":material/view_module:"  # how the sidebar lists this page (dashboard.navigation)

MAX_OVERVIEW = 512  # channels an overview shows at most (the technique's cap)
GRID_PX = 720  # about the width the grid is drawn at


def tile_px(field: int, patches: int) -> int:
    """The side a patch is drawn at: a whole multiple of its receptive field (the server enlarges nearest-neighbour,
    so pixels stay crisp) that fills about :data:`GRID_PX` with the grid's columns (8 to 256 px, the API's bounds)."""
    columns = math.ceil(math.sqrt(min(patches, MAX_OVERVIEW)))
    side = max(1, GRID_PX // columns // max(field, 1)) * field
    return int(min(256, max(8, side)))


def field_text(layer: str, channels: int, field: int, stride: int, input_size: int) -> str:
    """What one unit of ``layer`` sees, said against the input it comes from."""
    return (f"`{layer}`: {channels} channels · receptive field {field} px of a {input_size} px input "
            f"({field / input_size:.0%} of its side) · stride {stride} px")


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
    default = patch_layer(((r.name, r.receptive_field, r.spatial) for r in catalogue.layers), catalogue.input_size)
    layer = mid.selectbox("Layer", layers, key="tp_layer", index=layers.index(default) if default in layers else 0,
                          help=f"Preselected: the deepest layer whose receptive field is at most "
                               f"{PATCH_FIELD_SHARE:.0%} of the input side, so a patch is a part of an image")
    k = right.slider("Patches", 1, 36, 9, key="tp_k")
    row = by_name[str(layer)]
    st.caption(field_text(str(layer), row.output_shape[0], row.receptive_field, row.stride, catalogue.input_size))
    if row.receptive_field > catalogue.input_size:
        st.warning(f"A unit of `{layer}` sees more than the whole image: every patch is a whole image with a grey "
                   f"border. Pick a shallower layer (e.g. `{default}`) for parts of images.")
    overview = st.toggle("Overview: every channel's strongest patch", value=False, key="tp_overview")
    channel = None if overview else int(st.number_input("Channel", 0, row.output_shape[0] - 1, 0, key="tp_channel"))
    response = widgets.followed_corpus(
        info, model, f"Ranking every channel of `{layer}` over {dataset}… ({widgets.FIRST_TIME})",
        f"Ranking every channel of {layer}", "find the top patches", layer=layer, dataset=dataset, channel=channel,
        k=k, tile=tile_px(row.receptive_field, k if channel is not None else row.output_shape[0]))
    if response is None:
        return
    result = state.result(info, response)
    shown = list(result.images())
    if not shown:
        st.info("No patches: the dataset is empty.")
        return
    data = base64.b64decode(shown[0].value)
    st.image(data, width="content")  # drawn at its own size: the patches' pixels enlarged by a whole factor
    st.download_button("Download grid.png", data, file_name=f"{dataset}-{layer}-{channel}.png", mime="image/png",
                       key="tp_download")
    if channel is not None:
        st.caption(" · ".join(f"#{it['rank'] + 1} {it['label']} ({it['activation']:.2f})" for it in result.items()))


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
