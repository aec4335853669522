"""Faithfulness page: do the maps explain the model? Pointing game, deletion/insertion curves (Petsiuk et
al. 2018) and the model-randomisation sanity check (Adebayo et al. 2018), for each attribution technique."""

from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.http import ApiError, JobStatus  # noqa: E402
from dashboard import state, widgets  # noqa: E402

COLOURS = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572")


def line_chart(results: dict, series: str, x_title: str, y_title: str) -> go.Figure:  # type: ignore[type-arg]
    fig = go.Figure()
    for colour, (title, response) in zip(COLOURS * 4, results.items(), strict=False):
        xs, ys = response.series[series]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=title, line=dict(color=colour)))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=x_title, yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def page() -> None:
    st.header("Faithfulness")
    st.caption("Do the maps explain the model? On held-out built-in images with known object masks: the "
               "pointing game (Zhang et al. 2016), deletion and insertion of the top-ranked pixels (Petsiuk et al. "
               "2018: good maps kill the class fast and restore it fast) and cascading model randomisation "
               "(Adebayo et al. 2018: a map that does not change when the weights do explains the image, not "
               "the model).")
    if state.selected_model() != "builtin":
        st.info("Faithfulness is measured on the built-in dataset: pick the builtin model in the sidebar.")
        return
    try:
        techniques = state.techniques("attribution")
    except ApiError as exc:
        widgets.api_error(exc, "list the techniques")
        return
    titles = {t.name: t.title for t in techniques}
    chosen = st.multiselect("Techniques", list(titles), default=list(titles), format_func=titles.get,
                            key="faith_techniques")
    n = st.slider("Held-out images", 10, 200, 30, 10, key="faith_n")
    if not chosen:
        st.info("Pick at least one technique.")
        return
    progress = st.progress(0.0, text="Measuring…")
    results = {}
    for i, name in enumerate(chosen):
        text = f"{titles[name]}: pointing game, deletion, insertion, randomisation… ({i + 1}/{len(chosen)})"
        progress.progress(i / len(chosen), text=text)

        def show(job: JobStatus, i: int = i, text: str = text) -> None:  # a long measurement runs as a job
            done = job.step / job.total if job.total else 0.0
            progress.progress(min(1.0, (i + done) / len(chosen)), text=f"{text} — {job.step} of {job.total}")

        try:
            results[titles[name]] = state.corpus("faithfulness", "builtin", on_job=show, technique=name, n=n)
        except ApiError as exc:
            progress.empty()
            widgets.api_error(exc, f"measure {titles[name]}")
            return
    progress.empty()
    scores = go.Figure()
    for metric, colour in (("pointing_game", "#29335c"), ("insertion_auc", "#669bbc"), ("deletion_auc", "#e4572e")):
        scores.add_trace(go.Bar(x=list(results), y=[r.scalars[metric] for r in results.values()],
                                name=metric.replace("_", " "), marker_color=colour,
                                text=[f"{r.scalars[metric]:.2f}" for r in results.values()], textposition="auto"))
    scores.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 1]),
                         legend=dict(orientation="h", y=-0.2))
    st.subheader("Scores (higher is better, except deletion)")
    st.plotly_chart(scores, width="stretch", key="faith_scores")
    left, right = st.columns(2)
    with left:
        st.subheader("Deletion")
        st.plotly_chart(line_chart(results, "deletion", "share of pixels deleted", "probability"), width="stretch",
                        key="faith_deletion")
    with right:
        st.subheader("Insertion")
        st.plotly_chart(line_chart(results, "insertion", "share of pixels inserted", "probability"),
                        width="stretch", key="faith_insertion")
    st.subheader("Model randomisation")
    any_response = next(iter(results.values()))
    layers = [item["layer"] for item in any_response.items]
    fig = line_chart(results, "randomisation", "layers randomised, from the top", "rank correlation with the "
                                                                                   "original map")
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(layers))), ticktext=layers, tickangle=-45)
    st.plotly_chart(fig, width="stretch", key="faith_randomisation")


page()
