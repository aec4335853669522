"""Fooling page: a small change within an L∞ budget that makes the model say another class (Szegedy et al. 2014)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from client.results import Result
from dashboard import state, synthesis_view, widgets

TITLE, ICON = "Fooling", ":material/theater_comedy:"  # how the sidebar lists this page (dashboard.navigation)


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
        target = synthesis_view.target_picker(catalogue.classes, info.name, "Make it say")
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
        triptych(state.result(info, response))
        synthesis_view.finish(info, response, Path(name).stem + "_fooled", info.name)


def triptych(result: Result) -> None:
    """The original, the change and the fooled image (declared order, declared captions), then the verdict."""
    for column, shown in zip(st.columns(3), result.images(), strict=False):
        column.image(widgets.png(shown.value), caption=shown.caption, width="stretch")
    steps = int(result.scalar("steps"))
    for verdict in result.with_role("verdict", "scalars"):
        if not verdict.value:
            st.warning(f"Not fooled within {steps} steps: raise the budget or the steps.")
            continue
        rounds = int(result.scalar("minimising_rounds", 0))
        shrunk = (f"; {rounds} rounds then shrank the change to L∞ {result.scalar('linf_255'):.1f}/255 "
                  f"({steps} steps in all)") if rounds else ""
        st.success(f"The model says “{result.label('result_label')}” after "
                   f"{int(result.scalar('steps_to_fool', steps))} steps{shrunk}.")


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
