"""Embedding page (CS231n lecture 12, "t-SNE of CNN codes"): every image of a dataset as one point of a
scatter that stays interactive at a million points (zoomed out it draws their density, zoomed in each point),
coloured by label, predicted class, correct/incorrect or a chosen channel's activation, narrowed by a filter
(labels, predicted classes, confidence range); hovering a point shows its image, clicking or lasso-selecting points
shows the images and exports their files as CSV; the map snapped to a grid of thumbnails can be downloaded."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import numpy as np
import streamlit as st

from client.http import ApiError
from client.results import Result
from convlens.schema import DATASETS
from dashboard import state, widgets
from dashboard.hover_scatter import (
    hover_scatter,
    scatter_args,
    served_dir,
    sheet_key,
    write_columns,
    write_sheets_in_background,
)

TITLE, ICON = "Embedding", ":material/scatter_plot:"  # how the sidebar lists this page (dashboard.navigation)

PALETTE = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572", "#17bebb", "#c5283d", "#6d597a",
           "#3a5a40", "#ff9f1c", "#5e548e", "#2ec4b6", "#8d99ae", "#ef476f", "#118ab2")
MAX_SHOWN = 32
METHODS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
# Why a method is fitted on a sample above its limit (convlens.corpus.projection.FIT_MAX; docs/corpus.md has the
# measurements): what an analyst reads beside a sampled map.
SAMPLED_BECAUSE = {
    "tsne": "Barnes-Hut t-SNE costs about two minutes per 10,000 points on two CPU cores and grows faster than "
            "the number of points, so a full fit of a large dataset would take hours.",
    "umap": "fitting UMAP on every image took 3.4× as long at 100,000 images for the same trustworthiness "
            "(0.9973, k = 10), and its neighbour graph grows with every image.",
}
COLOUR_BY = {"label": "label", "predicted": "predicted", "correct": "correct?", "channel": "channel"}
CORRECT = (("incorrect", "#c5283d"), ("correct", "#a8c686"))  # by the correct column's 0/1
RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # a channel's activation, low to high (viridis)
MAX_LEGEND = 40
COLUMNS = ("x", "y", "label", "predicted", "correct", "confidence")
FILES_PER_CALL = 100_000  # the embedding answers at most this many files a call


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


def class_names(result: Result) -> dict[str, dict[int, str]]:
    """The names the label and predicted columns' codes stand for (the answer's items), by column."""
    names: dict[str, dict[int, str]] = {"label": {}, "predicted": {}}
    for row in result.items():
        if "column" in row:
            names[str(row["column"])][int(row["code"])] = str(row["name"])
    return names


def colouring(colour_by: str, names: dict[str, dict[int, str]], activation: np.ndarray | None = None,
              channel: int = 0) -> dict[str, Any]:
    """How the component colours the points: a colour per class code of a column (a predicted class shares its
    label's colour), the two of correct/incorrect, or a colour ramp over the channel's activation range."""
    if colour_by == "channel" and activation is not None:
        finite = activation[np.isfinite(activation)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        return {"column": "activation", "range": [low, high], "ramp": list(RAMP), "title": f"channel {channel}"}
    if colour_by == "correct":
        return {"column": "correct", "colours": [c for _, c in CORRECT],
                "legend": [{"name": n, "colour": c} for n, c in CORRECT]}
    column = "predicted" if colour_by == "predicted" else "label"
    label_code = {name: k for k, name in names["label"].items()}
    codes = names[column]
    colours = ["#8d99ae"] * (max(codes, default=0) + 1)
    extra = len(label_code)
    for code, name in sorted(codes.items()):
        k = label_code.get(name)
        if k is None:
            k, extra = extra, extra + 1
        colours[code] = PALETTE[k % len(PALETTE)]
    legend = [{"name": name, "colour": colours[code]} for code, name in sorted(codes.items(), key=lambda c: c[1])]
    if len(legend) > MAX_LEGEND:
        legend = legend[:MAX_LEGEND] + [{"name": f"… {len(legend) - MAX_LEGEND} more", "colour": "#ffffff"}]
    return {"column": column, "colours": colours, "legend": legend}


def filter_box(names: dict[str, dict[int, str]]) -> dict[str, Any]:
    """The filter's widgets: labels and predicted classes to keep (none chosen: all) and a confidence range; the
    component's filter (codes kept per column, or None for all; the range)."""
    with st.expander("Filter: labels, predicted classes, confidence", expanded=False):
        left, mid, right = st.columns(3)
        by_name = {column: {name: code for code, name in codes.items()} for column, codes in names.items()}
        labels = left.multiselect("Label", sorted(by_name["label"]), key="emb_filter_label",
                                  placeholder="every label")
        predicted = mid.multiselect("Predicted", sorted(by_name["predicted"]), key="emb_filter_predicted",
                                    placeholder="every class")
        low, high = right.slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="emb_filter_confidence")
    return {"label": [by_name["label"][n] for n in labels] or None,
            "predicted": [by_name["predicted"][n] for n in predicted] or None,
            "confidence": [float(low), float(high)]}


def kept(columns: dict[str, np.ndarray], keep: dict[str, Any]) -> np.ndarray:
    """The filter's mask over the points (what the component shows): the same test, in numpy."""
    mask = np.ones(len(columns["x"]), dtype=bool)
    for column in ("label", "predicted"):
        if keep.get(column) is not None:
            mask &= np.isin(columns[column], np.asarray(keep[column], dtype=columns[column].dtype))
    low, high = keep.get("confidence") or (0.0, 1.0)
    # the browser compares float32 with doubles: so does this (rounding would keep a different edge point)
    conf = columns["confidence"].astype(np.float64)
    return mask & (conf >= low) & (conf <= high)


def selection_csv(rows: list[dict[str, Any]], names: dict[str, dict[int, str]], columns: dict[str, np.ndarray]) -> str:
    """The selected images as CSV: index, file, label, predicted class, confidence."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "file", "label", "predicted", "confidence"])
    for row in rows:
        i = int(row["index"])
        writer.writerow([i, row["file"], names["label"].get(int(columns["label"][i]), ""),
                         names["predicted"].get(int(columns["predicted"][i]), ""),
                         f"{float(columns['confidence'][i]):.4f}"])
    return out.getvalue()


def export(info: Any, model: str, chosen: list[int], names: dict[str, dict[int, str]],
           columns: dict[str, np.ndarray], **request: Any) -> None:
    """A button that fetches the selection's files (the embedding's ``files``, asked for only now: the map itself
    carries no file names) and offers them as CSV."""
    key = hash(tuple(chosen))
    made = st.session_state.get("emb_csv")
    if st.button(f"Export the {len(chosen):,} selected as CSV", key="emb_csv_go"):
        rows = []
        try:
            for start in range(0, len(chosen), FILES_PER_CALL):
                part = chosen[start:start + FILES_PER_CALL]
                answer = state.dataset(info.name, model, **request, compact=True, files=",".join(map(str, part)))
                rows += [row for row in state.result(info, answer).items() if "index" in row]
        except ApiError as exc:
            widgets.api_error(exc, "fetch the selection's files")
            return
        made = st.session_state["emb_csv"] = (key, selection_csv(rows, names, columns))
    if made is not None and made[0] == key:
        st.download_button("Download selection.csv", made[1], file_name="selection.csv", mime="text/csv",
                           key="emb_csv_download")


def prepared(info: Any, answer: Any, coloured: Any | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The answers' columns (the map's; a channel's activation) decoded, and the file the component reads them
    from; kept in the session for these answer objects, so a rerun (a filter, a colour, a selection) decodes and
    writes nothing again (at 1M points both take a few tenths of a second)."""
    held = st.session_state.get("emb_prepared")
    if held is not None and held[0] is answer and held[1] is coloured and (served_dir() / held[3]["url"]).is_file():
        return held[2], held[3]
    result = state.result(info, answer)
    columns = {name: result.column(name) for name in COLUMNS}
    if coloured is not None:
        columns["activation"] = state.result(info, coloured).column("activation")
    data = write_columns(columns)
    st.session_state["emb_prepared"] = (answer, coloured, columns, data)
    return columns, data


def page() -> None:
    st.header("Embedding")
    st.caption("Each image's CNN code (the layer before the classifier) mapped to 2-D: images the network "
               "finds similar land close together. Hover a point to see its image; click or lasso points to see "
               "them all. Zoomed out, many points are drawn as their density; zoom in (wheel, +) to see each one.")
    rows = widgets.dataset_rows()
    if rows is None:
        return
    names_of_sets = [d["name"] for d in rows]
    by_name = {d["name"]: d for d in rows}
    model = state.selected_model()
    [info] = state.served_by(__file__)
    left, mid, right = st.columns(3)
    dataset = left.selectbox("Dataset", names_of_sets, key="emb_dataset")
    method = mid.radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True, key="emb_method")
    colour_by = right.radio("Colour by", list(COLOUR_BY), format_func=COLOUR_BY.get, horizontal=True,
                            key="emb_colour")
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="emb_seed"))
    request = {"dataset": dataset, "projection": method, "seed": seed}
    response = widgets.followed_corpus(info, model, f"CNN codes of {dataset}, then {METHODS[method]}… "
                                       f"({widgets.FIRST_TIME})", f"CNN codes, then {METHODS[method]}",
                                       f"map {dataset}", **request, compact=True)
    if response is None:
        return
    result = state.result(info, response)
    names = class_names(result)
    n = int(result.scalar("images", 0))
    codes_time = "cached" if result.scalar("codes_cached", 0) else f"{result.scalar('codes_seconds', 0.0):.1f} s"
    map_time = ("cached" if result.scalar("projection_cached", 0) else
                f"{result.scalar('projection_seconds', 0.0):.1f} s")
    fitted = int(result.scalar("fitted", n))
    st.caption(f"{n:,} images · codes of {result.scalar('dim', 0):.0f} dimensions at layer "
               f"`{response.layer}` · codes {codes_time} · map {map_time}"
               + (f" · fitted on {fitted:,}, the rest placed on it" if fitted < n else ""))
    if fitted < n:
        st.info(f"{METHODS[method]} was fitted on a seeded sample of **{fitted:,} of the {n:,} images**: "
                f"{SAMPLED_BECAUSE.get(method, '')} Every other image is placed at the distance-weighted mean "
                "position of its 10 nearest sampled images (in the codes' 50 principal components), so clusters "
                "keep their place; PCA is always computed on every image.", icon=":material/info:")
    activation, channel, coloured = None, 0, None
    if colour_by == "channel":
        dim = int(result.scalar("dim", 1))
        channel = int(st.number_input(f"Channel of `{response.layer}` (0 to {dim - 1})", 0, max(dim - 1, 0), 0,
                                      key="emb_channel"))
        coloured = widgets.followed_corpus(info, model, f"Channel {channel}'s activations…",
                                           f"channel {channel}", f"colour by channel {channel}", **request,
                                           compact=True, channel=channel)
        if coloured is None:
            return
    columns, data = prepared(info, response, coloured)
    activation = columns.get("activation")
    keep = filter_box(names)
    count = int(kept(columns, keep).sum())
    if count < n:
        st.caption(f"The filter keeps {count:,} of {n:,} images.")
    key = sheet_key(dataset, str(by_name[dataset].get("fingerprint", "")), n)
    labels = {column: {str(code): name for code, name in codes.items()} for column, codes in names.items()}
    chosen = hover_scatter(scatter_args(data, colouring(colour_by, names, activation, channel), labels, key, keep),
                           key="emb_chart")
    hover_thumbnails(dataset, key, n, model)
    if chosen:
        st.subheader(f"Selected: {len(chosen)} image{'s' if len(chosen) > 1 else ''}"
                     + (f" (first {MAX_SHOWN})" if len(chosen) > MAX_SHOWN else ""))
        show_images(dataset, chosen, model)
        export(info, model, chosen, names, columns, **request)
    with st.expander("Grid view: the map snapped to a grid of thumbnails", expanded=False):
        side = st.slider("Grid side", 8, 64, 24, 4, key="emb_grid")
        if st.button("Make the grid", key="emb_grid_go"):
            with st.spinner("Snapping to the grid…"):
                try:
                    grid = state.dataset(info.name, model, dataset=dataset, projection=method, seed=seed,
                                         grid=side, compact=True)
                except ApiError as exc:
                    widgets.api_error(exc, "make the grid")
                    return
            data_png = base64.b64decode(state.result(info, grid).image("grid"))
            st.image(data_png, caption=f"{side}×{side} thumbnails", width="stretch")
            st.download_button("Download grid.png", data_png, file_name=f"{dataset}-{method}-grid.png",
                               mime="image/png", key="emb_grid_download")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
