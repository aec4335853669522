"""Fooling page: a small change within an L∞ budget that makes the model say another class (Szegedy et al. 2014),
beside the model's robustness curve: how many held-out images each budget fools."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from client.http import TechniqueInfo
from client.results import Result
from convlens.schema import CORPUS, DATASET_PARAM, SYNTHESIS
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Fooling", ":material/theater_comedy:"  # how the sidebar lists this page (dashboard.navigation)
EASIEST = "(the easiest class for this image)"  # no target: the server aims for the class nearest to first order
CURVE = "robustness"  # the declared series of the model's measured curve
IMAGES = "robustness_images"  # the declared scalar: how many images the curve was measured on
MEASURE_IMAGES = 30  # the measurement's default number of images (about a second per image and budget)
Curve = tuple[list[float], list[float]]


def page() -> None:
    st.header("Fooling images")
    st.caption("A change too small to notice (an L∞ budget in 1/255 steps) that makes the model say a class "
               "of your choice — Szegedy et al. 2014, CS231n lecture 12.")
    found = synthesis_view.served_and_layers(__file__)
    if found is None:
        return
    served, catalogue = found
    [info] = [t for t in served if t.family == SYNTHESIS]
    measuring = next((t for t in served if t.family == CORPUS), None)  # measures a curve over a dataset
    left, right = st.columns([1, 2])
    with left:
        chosen = widgets.choose_image(f"{info.name}_")
        target = synthesis_view.target_picker(catalogue.classes, info.name, "Make it say", allow_none=EASIEST)
        with st.expander("Budget and steps"):
            params = widgets.param_controls(info, info.name)
    if chosen is None:
        return
    name, image = chosen
    with right:
        response = synthesis_view.run(info, {info.inputs[0]: image}, params, info.name, target=target,
                                      label="Fool the model")
        if response is None:
            return
        result = state.result(info, response)
        triptych(result)
        verdict(result)
        curve = answered_curve(result) or st.session_state.get(measured_key(info.name))
        robustness_chart(result, float(params.get("epsilon", 0.0)), info.name, curve)  # why the budget matters
        if curve is None and measuring is not None:
            measure_offer(measuring, info.name)
        per_step = {k: v for k, v in response.series.items() if k != CURVE}  # the loss chart shows steps only
        synthesis_view.finish(info, dataclasses.replace(response, series=per_step), Path(name).stem + "_fooled",
                              info.name)


def triptych(result: Result) -> None:
    """The original, the change and the fooled image (declared order, declared captions)."""
    for column, shown in zip(st.columns(3), result.images(), strict=False):
        column.image(widgets.png(shown.value), caption=shown.caption, width="stretch")


def verdict(result: Result) -> None:
    steps = int(result.scalar("steps"))
    aimed = " (the easiest class for this image)" if result.scalar("easiest", 0) else ""
    for said in result.with_role("verdict", "scalars"):
        if not said.value:
            st.warning(f"Not fooled into “{result.label('target_label')}”{aimed} within {steps} steps: raise the "
                       "budget or the steps (the curve beside says which budgets fool most images).")
            continue
        rounds = int(result.scalar("minimising_rounds", 0))
        shrunk = (f"; {rounds} rounds then shrank the change to L∞ {result.scalar('linf_255'):.1f}/255 "
                  f"({steps} steps in all)") if rounds else ""
        st.success(f"The model says “{result.label('result_label')}”{aimed} after "
                   f"{int(result.scalar('steps_to_fool', steps))} steps{shrunk}.")


def answered_curve(result: Result) -> tuple[Curve, int] | None:
    """The curve a fooling answer carries (measured on these weights) and its number of images, or None."""
    if not result.has("series", CURVE):
        return None
    return result.series(CURVE), int(result.scalar(IMAGES, 0))


def measured_key(key: str) -> str:
    """Where the session keeps the curve measured from this page, per model."""
    return f"{key}_measured_{state.selected_model()}"


def measure_offer(measuring: TechniqueInfo, key: str) -> None:
    """No curve for these weights: measure one over a dataset the analyst picks, as a server job (a progress bar
    with the time left); the server keeps it, so later fooling answers on these weights carry it."""
    st.markdown("**Measure this model's curve**: attack each of a few dataset images towards a random other class "
                "within each budget (about a second per image and budget; kept for these weights).")
    rows = widgets.dataset_rows("No dataset yet to measure the curve on: create one on the Datasets page.")
    if rows is None:
        return
    left, right = st.columns(2)
    dataset = left.selectbox("Dataset", [d["name"] for d in rows], key=f"{key}_curve_dataset")
    n = int(right.number_input("Images", 1, 200, MEASURE_IMAGES, key=f"{key}_curve_n"))
    if not st.button("Measure this model's curve", key=f"{key}_measure"):
        return
    response = widgets.followed_corpus(measuring, state.selected_model(),
                                       f"Measuring the curve over {n} images of {dataset}…", "Measuring the curve",
                                       "measure the curve", **{DATASET_PARAM: dataset, "n": n})
    if response is None:
        return
    measured = state.result(measuring, response)
    st.session_state[measured_key(key)] = (measured.series(CURVE), int(measured.scalar(IMAGES, n)))
    st.rerun()  # the chart above draws the measured curve


def robustness_chart(result: Result, budget: float, key: str, measured: tuple[Curve, int] | None = None) -> None:
    """The model's measured curve (share of images fooled against the L∞ budget), this run's budget and this
    image's smallest fooling change found."""
    fig = go.Figure()
    curve, images = measured if measured is not None else (None, 0)
    if curve is not None:
        fig.add_trace(go.Scatter(x=curve[0], y=[100 * y for y in curve[1]], mode="lines", line_shape="hv",
                                 name=f"{images} images"))
    fig.add_vline(x=budget, line_dash="dash", annotation_text=f"budget {budget:g}/255",
                  annotation_position="bottom right")
    if result.scalar("fooled"):
        linf = result.scalar("linf_255")
        fig.add_trace(go.Scatter(x=[linf], y=[100 * share_within(curve, linf) if curve else 0.0], mode="markers",
                                 marker=dict(size=11, symbol="diamond"), name=f"this image: {linf:.1f}/255"))
    largest = max([budget, *(curve[0] if curve else [16.0])])
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title="Fooled within an L∞ budget",
                      xaxis=dict(title="L∞ budget (/255)", range=[0, largest * 1.05]),
                      yaxis=dict(title="images fooled (%)", range=[0, 102]),
                      # top left is empty: few images fool at small budgets, and the curve rises to the right
                      legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top", bgcolor="rgba(255,255,255,0.8)"))
    st.plotly_chart(fig, width="stretch", key=f"{key}_robustness")
    if curve is None:
        st.caption("No curve is measured for this model's weights yet: the point is this image's smallest fooling "
                   "change.")
        return
    what = result.outputs.get("series", CURVE).caption
    st.caption(f"Images, each pushed towards a random other class ({what}): "
               f"{100 * share_within(curve, budget):.0f}% fooled within this budget. The point: this image's "
               "smallest fooling change found.")


def share_within(curve: tuple[list[float], list[float]], budget: float) -> float:
    """The share of the curve's images fooled within ``budget`` (a step function of the budget)."""
    return max((y for x, y in zip(*curve, strict=True) if x <= budget + 1e-6), default=0.0)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
