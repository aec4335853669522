"""A family's generic page: any technique of the family, its controls built from its declared params and its
answer shown from its declared outputs (images with captions in declared order, headline scalars as metrics,
verdicts as success or warning, series as charts with their units, items as a table).

A technique needs no page of its own: its declaration is enough. Pages with a layout of their own
(``dashboard/app_pages/``) use :func:`show` for what they do not lay out themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from client.http import ApiError, LayerCatalogue, TechniqueInfo
from client.results import Result, Shown
from convlens.schema import ACTIVATIONS, ATTRIBUTION, BATCH_INPUT, CORPUS, DATASET_PARAM, PREDICTION, SYNTHESIS
from dashboard import familiarity, state, synthesis_view, widgets

NO_TARGET = "(the model's choice)"
TARGETED = (PREDICTION, ATTRIBUTION, SYNTHESIS)  # families whose requests take a target class
IMAGES_PER_ROW = 3


def page(family: str, names: Sequence[str] = ()) -> None:
    """The generic page of ``family``: its techniques ``names`` (all of the family when empty), one at a time."""
    try:
        found = [t for t in state.techniques(family) if not names or t.name in names]
    except ApiError as exc:
        widgets.api_error(exc, "list its techniques")
        return
    if not found:
        st.info("The server offers no technique here.")
        return
    info = found[0] if len(found) == 1 else st.radio("Technique", found, format_func=lambda t: t.title,
                                                     horizontal=True, key=f"{family}_technique")
    st.header(info.title)
    if info.reference:
        st.caption(info.reference)
    technique(info)


def technique(info: TechniqueInfo) -> None:
    """Controls, the run and the answer of one technique."""
    try:
        catalogue = state.layers(state.selected_model())
    except ApiError as exc:
        widgets.api_error(exc, "read the layer catalogue")
        return
    left, right = st.columns([1, 2])
    with left:
        images = input_pickers(info)
        layer = layer_picker(info, catalogue)
        target = target_picker(info, catalogue.classes)
        with st.expander("Settings"):
            params = dataset_param(info) | widgets.param_controls(info, info.name, skip=(DATASET_PARAM,))
    if images is None:
        return
    with right:
        response = RUNNERS[info.family](info, images, target, layer, params)
        if response is not None:
            show(info, response, info.name)


def input_pickers(info: TechniqueInfo) -> dict[str, Any] | None:
    """The technique's named images (a sample or an upload each; a list of samples for a batch input), or None
    while one is missing."""
    images: dict[str, Any] = {}
    for k, name in enumerate(info.inputs):
        if name == BATCH_INPUT:
            samples = state.samples()
            picked = st.multiselect("Images", list(samples), default=list(samples)[:4], key=f"{info.name}_batch")
            images[name] = [samples[p].read_bytes() for p in picked]
            continue
        collection = ("photos" if k == 0 else "styles") if info.family == SYNTHESIS else ""
        chosen = widgets.choose_image(f"{info.name}_{name}_", name.replace("_", " ").capitalize(), collection, k)
        if chosen is None:
            return None
        images[name] = chosen[1]
    return images


def layer_picker(info: TechniqueInfo, catalogue: LayerCatalogue) -> str | None:
    """A layer of the kind the technique needs (``TechniqueInfo.layer``), its declared default preselected."""
    if info.layer == "none":
        return None
    if info.layer == "conv":
        names = catalogue.conv_layers
    else:
        names = [r.name for r in catalogue.layers if r.spatial and len(r.output_shape) == 3]
    defaults = {"last_spatial": len(names) - 1, "middle_spatial": len(names) // 2,
                "first_conv": names.index(catalogue.first_conv_layer) if catalogue.first_conv_layer in names else 0}
    index = defaults.get(info.default_layer, names.index(catalogue.default_cam_layer)
                         if catalogue.default_cam_layer in names else len(names) - 1)
    options = ([None] if info.layer == "optional" else []) + names
    picked = st.selectbox("Layer", options, index=index + (info.layer == "optional"), key=f"{info.name}_layer",
                          format_func=lambda n: "(the technique's default)" if n is None else n)
    return str(picked) if picked is not None else None


def target_picker(info: TechniqueInfo, classes: Sequence[str]) -> int | None:
    if info.family not in TARGETED:
        return None
    options = [NO_TARGET, *classes]
    picked = st.selectbox("Class", options, key=f"{info.name}_target")
    return None if picked == NO_TARGET else options.index(picked) - 1


def dataset_param(info: TechniqueInfo) -> dict[str, Any]:
    """A ``dataset`` param: one of the server's datasets."""
    if not any(p["name"] == DATASET_PARAM for p in info.params):
        return {}
    rows = widgets.dataset_rows() or []
    names = [r["name"] for r in rows]
    return {DATASET_PARAM: st.selectbox("Dataset", names, key=f"{info.name}_dataset")} if names else {}


def _explain(info: TechniqueInfo, images: Mapping[str, Any], target: int | None, layer: str | None,
             params: Mapping[str, Any]) -> Any:
    endpoint, named = state.request_of(info)
    with st.spinner(f"{info.title}…"):
        try:
            return state.call(endpoint, images[info.inputs[0]], state.selected_model(), target=target, layer=layer,
                              **named, **params)
        except ApiError as exc:
            widgets.api_error(exc, f"run {info.title}")
    return None


def _grids(info: TechniqueInfo, images: Mapping[str, Any], target: int | None, layer: str | None,
           params: Mapping[str, Any]) -> Any:
    endpoint, named = state.request_of(info)
    with st.spinner(f"{info.title}…"):
        try:
            image = images[info.inputs[0]] if info.inputs else None
            return state.grids(endpoint, image, state.selected_model(), layer, **named, **params)
        except ApiError as exc:
            widgets.api_error(exc, f"run {info.title}")
    return None


def _synthesis(info: TechniqueInfo, images: Mapping[str, Any], target: int | None, layer: str | None,
               params: Mapping[str, Any]) -> Any:
    return synthesis_view.run(info, images, params, info.name, target=target, layer=layer, label=f"Run {info.title}")


def _corpus(info: TechniqueInfo, images: Mapping[str, Any], target: int | None, layer: str | None,
            params: Mapping[str, Any]) -> Any:
    endpoint, named = state.request_of(info)
    with st.spinner(f"{info.title} (cached after the first time)…"):
        try:
            return state.corpus(endpoint, state.selected_model(), layer=layer, images=dict(images) or None,
                                **named, **params)
        except ApiError as exc:
            widgets.api_error(exc, f"run {info.title}")
    return None


Runner = Callable[[TechniqueInfo, Mapping[str, Any], "int | None", "str | None", Mapping[str, Any]], Any]
RUNNERS: dict[str, Runner] = {PREDICTION: _explain, ATTRIBUTION: _explain, ACTIVATIONS: _grids,
                              SYNTHESIS: _synthesis, CORPUS: _corpus}


def show(info: TechniqueInfo, response: Any, key: str) -> None:
    """Everything a technique's answer holds, laid out by its declaration."""
    result = state.result(info, response)
    if getattr(response, "layer", None):
        st.caption(f"Layer `{response.layer}`")
    if getattr(response, "topk", None):
        st.plotly_chart(widgets.top_chart(response), width="stretch", key=f"{key}:topk")
    metrics(result)
    verdicts(result)
    pictures(result, key)
    if any(s.declared.kind == "map" for s in result.images()):
        widgets.heat_scale(result, key)  # what a heat map's colours stand for, when the answer says
    for shown in result.present("labels"):
        st.caption(f"{shown.declared.caption or shown.key}: **{shown.value}**")
    for shown in result.present("series"):
        st.plotly_chart(series_chart(shown), width="stretch", key=f"{key}:series:{shown.key}")
    if getattr(response, "points", None):
        st.plotly_chart(points_chart(response.points), width="stretch", key=f"{key}:points")
    table(result, key)
    if hasattr(response, "weights"):
        synthesis_view.network_note(response)


def value_text(value: float, unit: str) -> str:
    return f"{value:.3g}" + (f" {unit}" if unit else "")


def metrics(result: Result) -> None:
    """Headline scalars as metrics, each labelled with its caption."""
    shown = list(result.with_role("headline", "scalars"))
    for column, s in zip(st.columns(len(shown)) if shown else [], shown, strict=True):
        column.metric(s.caption, value_text(float(s.value), s.declared.unit))


def verdicts(result: Result) -> None:
    """0/1 outcomes: success when 1, warning when 0, with the caption; whether the input looks like the model's
    training data in words of its own (:mod:`dashboard.familiarity`)."""
    for s in result.with_role("verdict", "scalars"):
        if s.key != familiarity.FAMILIAR:
            (st.success if s.value else st.warning)(s.caption)
    familiarity.note(result)


def pictures(result: Result, key: str) -> None:
    """The images, the primary ones first, then in declared order; each primary one can be downloaded."""
    primary = list(result.with_role("primary", "images"))
    rest = [s for s in result.images() if s.key not in {p.key for p in primary}]
    for start in range(0, len(primary) + len(rest), IMAGES_PER_ROW):
        row = (primary + rest)[start:start + IMAGES_PER_ROW]
        for column, s in zip(st.columns(IMAGES_PER_ROW), row, strict=False):
            column.image(widgets.png(s.value), caption=s.caption, width="stretch")
    for s in primary or (rest[:1] if rest else []):
        st.download_button(f"Download {s.caption or s.key}", widgets.to_png_bytes(widgets.png(s.value)),
                           file_name=f"{key}_{s.key}.png", mime="image/png", key=f"{key}:download:{s.key}")


def series_chart(shown: Shown) -> go.Figure:
    xs, ys = shown.value
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name=shown.key))
    unit = shown.declared.unit
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title=shown.caption or shown.key,
                      yaxis_title=unit or None)
    return fig


def points_chart(points: Sequence[Sequence[float]]) -> go.Figure:
    fig = go.Figure(go.Scattergl(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers"))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def cell(value: Any) -> Any:
    """A table cell: numbers and words as they are, anything nested as its text."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def table(result: Result, key: str) -> None:
    """Every scalar with its caption and unit, and the items (their declared fields, in declared order)."""
    numbers = [{"output": s.key, "value": float(s.value), "unit": s.declared.unit, "what": s.caption}
               for s in result.present("scalars")]
    fields = [d.name for d in result.outputs.of("items")]
    items = [{f: cell(item[f]) for f in fields if f in item} for item in result.items()]
    if items:
        st.dataframe(items, hide_index=True, width="stretch", key=f"{key}:items")
    if numbers:
        with st.expander("Every number"):
            st.dataframe(numbers, hide_index=True, width="stretch", key=f"{key}:numbers")
