"""Attribution page, the attribution family's page: which pixels made the model decide? Every attribution
technique the server declares side by side, each shown from its declared outputs (its primary image blended over
the input here, the family's map to download, its own images below)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

from client.http import ApiError, LayerCatalogue, TechniqueInfo
from client.results import Result
from convlens.colormaps import DIVERGING
from convlens.schema import ATTRIBUTION
from dashboard import familiarity, state, widgets

TITLE, ICON = "Attribution", ":material/target:"  # how the sidebar lists this page (dashboard.navigation)
DEFAULT = True


def blend(base: Image.Image, heat: Image.Image, alpha: float) -> Image.Image:
    """The server sends the colour-mapped heat at full opacity; the slider blends it here, no new request."""
    return Image.blend(base, heat.resize(base.size), alpha)


COLUMNS = 4  # maps per row


def family_images(techniques: list[TechniqueInfo]) -> set[str]:
    """The images every attribution technique declares (the family's: input, map, overlay); the rest are a
    technique's own, shown in an expander under its map."""
    names = [{d.name for d in t.outputs.of("images")} for t in techniques]
    return set.intersection(*names) if names else set()


def controls(image: tuple[str, bytes], catalogue: LayerCatalogue, techniques: list[TechniqueInfo]
             ) -> tuple[int | None, str, float, dict[str, dict[str, Any]]]:
    """The class to explain, the layer of the techniques that need one, the overlay opacity and each technique's
    own knobs."""
    st.image(image[1], caption=image[0], width=220)
    target_options = ["predicted class", *catalogue.classes]
    target_label = st.selectbox("Explain class", target_options, key="target")
    target = None if target_label == "predicted class" else target_options.index(target_label) - 1
    cam_layers = catalogue.cam_layers
    needing = ", ".join(t.title for t in techniques if t.layer == "spatial")
    layer = st.selectbox(f"Layer ({needing})", cam_layers, key="layer",
                         index=cam_layers.index(catalogue.default_cam_layer)
                         if catalogue.default_cam_layer in cam_layers else len(cam_layers) - 1)
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="alpha")
    knobs = {}
    for t in techniques:
        if any(p["default"] is not None and p["name"] != "layer" for p in t.params):
            with st.expander(f"{t.title} settings"):
                knobs[t.name] = widgets.param_controls(t, t.name)
    return target, layer, alpha, knobs


def explain_all(image: bytes, model: str, target: int | None, layer: str, knobs: dict[str, dict[str, Any]],
                techniques: list[TechniqueInfo], progress: Any) -> tuple[Any, dict[str, Any]]:
    """The top classes (the prediction family's technique) and every technique's answer."""
    [predict] = [t for t in state.served_by(__file__) if t not in techniques]  # the top classes beside the maps
    endpoint, named = state.request_of(predict)
    top = state.call(endpoint, image, model, topk=5, **named)
    results = {}
    started = time.monotonic()
    for i, t in enumerate(techniques, start=1):
        done = i / (len(techniques) + 1)
        progress.progress(done, text=f"{t.title}… {widgets.time_left(time.monotonic() - started, done)}")
        endpoint, named = state.request_of(t)
        params = dict(knobs.get(t.name, {}), alpha=1.0, **named)
        results[t.name] = state.call(endpoint, image, model, target=target,
                                     layer=layer if t.layer == "spatial" else None, **params)
    return top, results


def show_map(t: TechniqueInfo, response: Any, common: set[str], alpha: float, stem: str) -> None:
    """One technique's map over the input (its primary image blended here), its download and its own images."""
    result = state.result(t, response)
    pictures = [s for s in result.images() if s.declared.kind == "picture"]
    [primary] = list(result.with_role("primary", "images"))
    base = widgets.png(pictures[0].value) if pictures else widgets.png(primary.value)
    st.image(blend(base, widgets.png(primary.value), alpha),
             caption=t.title + (f" @ `{response.layer}`" if response.layer else ""), width="stretch")
    widgets.heat_scale(result, f"scale_{t.name}")  # what the colours stand for (at full opacity)
    for s in result.images():
        if s.key in common and s.declared.kind == "map" and s.key != primary.key:
            # the column's caption names the technique: the label stays short enough for a narrow column
            st.download_button(f"Download {s.key}", widgets.to_png_bytes(widgets.png(s.value)),
                               file_name=f"{stem}_{t.name}_{s.key}.png", mime="image/png",
                               key=f"download_{t.name}_{s.key}", help=f"{t.title}: the {s.key} as a PNG")
        elif s.key not in common:
            with st.expander(s.caption[:1].upper() + s.caption[1:]):
                st.image(widgets.png(s.value), width="stretch")
                signed_scale(result, s.key, f"scale_{t.name}_{s.key}")


def signed_scale(result: Result, image: str, key: str) -> None:
    """The colour bar of a signed map (blue below zero, white at zero, red above), when the answer gives its range."""
    limit = result.values().get(f"{image}_abs_max")
    if isinstance(limit, (int, float)):
        st.plotly_chart(widgets.colour_bar(DIVERGING, -float(limit), float(limit)), width="stretch",
                        config={"displayModeBar": False}, key=key)


def page() -> None:
    st.header("Attribution")
    model = state.selected_model()
    try:
        techniques = state.techniques(ATTRIBUTION)
    except ApiError as exc:
        st.error(f"Cannot reach the model catalogue: {exc.message}", icon=":material/error:")
        return
    st.caption("Which pixels decide the class? " + "; ".join(f"{t.reference} ({t.title})" for t in techniques) + ".")
    chosen = widgets.choose_image()
    if chosen is None:
        return
    try:
        catalogue = state.layers(model)
    except ApiError as exc:
        st.error(f"Cannot reach the model catalogue: {exc.message}", icon=":material/error:")
        return
    left, right = st.columns([1, 2])
    with left:
        target, layer, alpha, knobs = controls(chosen, catalogue, techniques)
    progress = right.progress(0.0, text="Classifying…")
    try:
        top, results = explain_all(chosen[1], model, target, layer, knobs, techniques, progress)
    except ApiError as exc:
        widgets.api_error(exc, "explain this image")
        return
    finally:
        progress.empty()
    with right:
        st.subheader("Top-5 classes")
        st.plotly_chart(widgets.top_chart(top), width="stretch", key="topk_chart")
        if top.weights == "random":
            st.warning("These maps come from a network with RANDOM weights.")
        st.caption(f"Model `{top.model}` with {top.weights} weights")
        familiarity.note(state.result(techniques[0], results[techniques[0].name]))
    st.subheader(f"Why “{next(iter(results.values())).target_label}”?")
    common = family_images(techniques)
    for start in range(0, len(techniques), COLUMNS):
        row = techniques[start:start + COLUMNS]
        for column, t in zip(st.columns(COLUMNS), row, strict=False):
            with column:
                show_map(t, results[t.name], common, alpha, Path(chosen[0]).stem)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
