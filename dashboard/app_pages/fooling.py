"""Fooling page: a small change within an L∞ budget that makes the model say another class (Szegedy et al. 2014)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dashboard import synthesis_view, widgets  # noqa: E402


def page() -> None:
    st.header("Fooling images")
    st.caption("A change too small to notice (an L∞ budget in 1/255 steps) that makes the model say a class "
               "of your choice — Szegedy et al. 2014, CS231n lecture 12.")
    found = synthesis_view.technique_and_layers("fooling")
    if found is None:
        return
    info, catalogue = found
    classes = catalogue.classes
    left, right = st.columns([1, 2])
    with left:
        chosen = widgets.choose_image("fooling_")
        target = synthesis_view.target_picker(classes, "fooling", "Make it say")
        with st.expander("Budget and steps"):
            params = widgets.param_controls(info, "fooling")
    if chosen is None:
        return
    name, image = chosen
    with right:
        result = synthesis_view.run(info, {"image": image}, params, "fooling", target=target, label="Fool the model")
        if result is None:
            return
        shown = [("original", f"original: {result.labels['original_label']} "
                              f"({result.scalars['original_probability']:.0%})"),
                 ("change", f"change ×{255 / max(result.scalars['linf_255'], 1e-6):.0f} "
                            f"(L∞ = {result.scalars['linf_255']:.1f}/255)"),
                 ("result", f"fooled: {result.labels['result_label']} ({result.scalars['result_probability']:.0%})")]
        for column, (key, caption) in zip(st.columns(3), shown, strict=True):
            column.image(widgets.png(result.images[key]), caption=caption, width="stretch")
        if result.scalars.get("fooled"):
            rounds = int(result.scalars.get("minimising_rounds", 0))
            shrunk = (f"; {rounds} rounds then shrank the change to L∞ {result.scalars['linf_255']:.1f}/255 "
                      f"({int(result.scalars['steps'])} steps in all)") if rounds else ""
            st.success(f"The model says “{result.labels['result_label']}” after "
                       f"{int(result.scalars.get('steps_to_fool', result.scalars['steps']))} steps{shrunk}.")
        else:
            st.warning(f"Not fooled within {int(result.scalars['steps'])} steps: raise the budget or the steps.")
        synthesis_view.finish(result, Path(name).stem + "_fooled", "fooling")


page()
