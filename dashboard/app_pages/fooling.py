"""Fooling page: a small change within an L∞ budget that makes the model say another class (Szegedy et al. 2014),
beside the model's robustness curve: how many held-out images each budget fools."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from client.results import Result
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Fooling", ":material/theater_comedy:"  # how the sidebar lists this page (dashboard.navigation)
EASIEST = "(the easiest class for this image)"  # no target: the server aims for the class nearest to first order
CURVE = "robustness"  # the declared series of the model's measured curve


def page() -> None:
    st.header("Fooling images")
    st.caption("A change too small to notice (an L∞ budget in 1/255 steps) that makes the model say a class "
               "of your choice — Szegedy et al. 2014, CS231n lecture 12.")
    found = synthesis_view.served_and_layers(__file__)
    if found is None:
        return
    [info], catalogue = found
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
        robustness_chart(result, float(params.get("epsilon", 0.0)), info.name)  # why the budget matters
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


def robustness_chart(result: Result, budget: float, key: str) -> None:
    """The model's measured curve (share of held-out images fooled against the L∞ budget), this run's budget and
    this image's smallest fooling change found."""
    fig = go.Figure()
    curve = result.series(CURVE) if result.has("series", CURVE) else None
    if curve is not None:
        images = int(result.scalar("robustness_images", 0))
        fig.add_trace(go.Scatter(x=curve[0], y=[100 * y for y in curve[1]], mode="lines", line_shape="hv",
                                 name=f"{images} held-out images"))
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
        st.caption("No curve is measured for this model's weights (bench/fooling_curve.py measures one, about a "
                   "minute per 100 images): the point is this image's smallest fooling change.")
        return
    measured = result.outputs.get("series", CURVE).caption
    st.caption(f"Held-out images, each pushed towards a random other class ({measured}): "
               f"{100 * share_within(curve, budget):.0f}% fooled within this budget. The point: this image's "
               "smallest fooling change found.")


def share_within(curve: tuple[list[float], list[float]], budget: float) -> float:
    """The share of the curve's images fooled within ``budget`` (a step function of the budget)."""
    return max((y for x, y in zip(*curve, strict=True) if x <= budget + 1e-6), default=0.0)


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
