"""Faithfulness page: do the maps explain the model? Pointing game, deletion/insertion curves (Petsiuk et
al. 2018) and the model-randomisation sanity check (Adebayo et al. 2018), for each attribution technique."""

from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st

from client.http import ApiError, JobStatus, TechniqueInfo
from client.results import Result
from convlens.outputs import Declared
from convlens.schema import ATTRIBUTION
from dashboard import state, widgets

TITLE, ICON = "Faithfulness", ":material/fact_check:"  # how the sidebar lists this page (dashboard.navigation)
GROUP = ATTRIBUTION  # shown with the family it measures

COLOURS = ("#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572")
SCORE_COLOURS = ("#29335c", "#669bbc", "#e4572e")
BUILTIN = "builtin"  # the model whose held-out images have object masks
FIRST_TIME = "first time only: cached afterwards"
# the legend under everything (the figure's bottom edge, not the plot's): clear of the x labels, the axis title
# and the plotly toolbar at the top right
BELOW = dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom", yref="container")


def line_chart(results: dict[str, Result], series: Declared) -> go.Figure:
    """One declared series of every technique measured; the axes named by its caption ("y vs x")."""
    fig = go.Figure()
    for colour, (title, result) in zip(COLOURS * 4, results.items(), strict=False):
        xs, ys = result.series(series)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=title, line=dict(color=colour)))
    y_title, _, x_title = series.caption.partition(" vs ")
    # the legend above the plot and margins that grow to fit the tick labels: nothing overlaps or is cut off
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10), xaxis_title=x_title, yaxis_title=y_title,
                      legend=BELOW)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def randomisation_chart(results: dict[str, Result], series: Declared) -> go.Figure:
    """Similarity along the cascade, each step named by the layer randomised last (the items name them), the
    names upright and given the room they need."""
    layers = [str(item["layer"]) for item in next(iter(results.values())).items()]
    fig = line_chart(results, series)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(layers))), ticktext=layers, tickangle=-90,
                     automargin=True)  # upright names: slanted ones' boxes overlap their neighbours' at 15 layers
    fig.update_layout(height=420)
    return fig


def score_chart(results: dict[str, Result]) -> go.Figure:
    """The headline scores (declared with role "headline") of every technique measured, grouped."""
    scores = go.Figure()
    first = next(iter(results.values()))
    for declared, colour in zip(first.outputs.with_role("headline", "scalars"), SCORE_COLOURS * 4, strict=False):
        values = [r.scalar(declared) for r in results.values()]
        scores.add_trace(go.Bar(x=list(results), y=values, name=declared.name.replace("_", " "), marker_color=colour,
                                text=[f"{v:.2f}" for v in values], textposition="auto", hovertext=declared.caption))
    scores.update_layout(barmode="group", height=340, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(range=[0, 1]),
                         legend=BELOW)
    scores.update_xaxes(automargin=True)
    scores.update_yaxes(automargin=True)
    return scores


def measure(info: TechniqueInfo, chosen: list[str], titles: dict[str, str], n: int) -> dict[str, Result] | None:
    """Each chosen technique measured (a long measurement runs as a job: its progress shown)."""
    endpoint, named = state.request_of(info)
    progress = st.progress(0.0, text=f"Measuring… {FIRST_TIME}")
    started = time.monotonic()
    results = {}
    for i, name in enumerate(chosen):
        text = f"{titles[name]}: pointing game, deletion, insertion, randomisation… ({i + 1}/{len(chosen)})"
        share = i / len(chosen)
        progress.progress(share, text=f"{text} — {widgets.time_left(time.monotonic() - started, share)} "
                                      f"({FIRST_TIME})")

        def show(job: JobStatus, i: int = i, text: str = text) -> None:
            done = min(1.0, (i + (job.step / job.total if job.total else 0.0)) / len(chosen))
            left = widgets.time_left(time.monotonic() - started, done)
            progress.progress(done, text=f"{text} — {left} ({FIRST_TIME})")

        try:
            response = state.corpus(endpoint, BUILTIN, on_job=show, technique=name, n=n, **named)
        except ApiError as exc:
            progress.empty()
            widgets.api_error(exc, f"measure {titles[name]}")
            return None
        results[titles[name]] = state.result(info, response)
    progress.empty()
    return results


def page() -> None:
    st.header("Faithfulness")
    st.caption("Do the maps explain the model? On held-out built-in images with known object masks: the "
               "pointing game (Zhang et al. 2016), deletion and insertion of the top-ranked pixels (Petsiuk et al. "
               "2018: good maps kill the class fast and restore it fast) and cascading model randomisation "
               "(Adebayo et al. 2018: a map that does not change when the weights do explains the image, not "
               "the model).")
    if state.selected_model() != BUILTIN:
        st.info("Faithfulness is measured on the built-in dataset: pick the builtin model in the sidebar.")
        return
    try:
        techniques = state.techniques(ATTRIBUTION)
        [info] = state.served_by(__file__)
    except ApiError as exc:
        widgets.api_error(exc, "list the techniques")
        return
    titles = {t.name: t.title for t in techniques}
    chosen = st.multiselect("Techniques", list(titles), default=list(titles), format_func=lambda n: titles[n],
                            key="faith_techniques")
    n = st.slider("Held-out images", 10, 200, 30, 10, key="faith_n")
    if not chosen:
        st.info("Pick at least one technique.")
        return
    results = measure(info, chosen, titles, n)
    if results is None:
        return
    st.subheader("Scores (higher is better, except deletion)")
    st.plotly_chart(score_chart(results), width="stretch", key="faith_scores")
    curves = info.outputs.of("series")
    for column, declared in zip(st.columns(2), curves[:2], strict=False):
        with column:
            st.subheader(declared.name.capitalize())
            st.plotly_chart(line_chart(results, declared), width="stretch", key=f"faith_{declared.name}")
    for declared in curves[2:]:  # along the layers, top down (Adebayo et al.'s cascade)
        st.subheader(f"Model {declared.name}")
        st.plotly_chart(randomisation_chart(results, declared), width="stretch", key=f"faith_{declared.name}")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
