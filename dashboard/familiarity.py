"""Does the input look like the model's training data? What a page shows beside a prediction (issue #27).

Every prediction and attribution answer declares the verdict :data:`FAMILIAR` (``convlens.registry.FAMILIARITY``,
computed by ``convlens.familiarity``): 1 when the input is as close to the model's training images as 95 % of its
held-out images, 0 when not, absent when the model has no held-out set to be calibrated on.
"""

from __future__ import annotations

import streamlit as st

from client.http import ApiError
from client.results import Result
from dashboard import state

FAMILIAR = "familiar"  # the verdict's declared name
WAY_OUT = ("For photos: ImageNet weights (`make weights`, then pick resnet50 in the sidebar) or your own model "
           "(Models page).")
NOT_CALIBRATED = ("Not calibrated: this model has no held-out set, so nothing tells whether an input looks like its "
                  "training data.")


def described(model: str) -> tuple[str, str]:
    """``model`` as the info API describes it: its name with its description, and its classes ("its 10 classes")."""
    try:
        info = next((m for m in state.models() if m.name == model), None)
    except ApiError:
        info = None
    name = f"`{model}`" + (f" ({info.description})" if info is not None and info.description else "")
    return name, f"its {info.num_classes} classes" if info is not None and info.num_classes else "its classes"


def measured(result: Result) -> str:
    """The verdict's caption after its question: "familiarity 0.000; 95 % of its held-out images reach 0.029"."""
    said = result.caption(result.outputs.get("scalars", FAMILIAR)).split("? ", 1)[-1]
    return said[:1].lower() + said[1:]


def unfamiliar_text(result: Result, model: str) -> str:
    name, classes = described(model)
    return (f"This image does not look like the training data of {name}, so its prediction among {classes} means "
            f"little ({measured(result)}). {WAY_OUT}")


def note(result: Result) -> None:
    """A warning when the answer says the input is unlike the training data; a caption when it is alike or when
    the model is not calibrated; nothing when the technique declares no such verdict."""
    if result.outputs.find("scalars", FAMILIAR) is None:
        return
    value = result.get("scalars", FAMILIAR)
    model = str(getattr(result.response, "model", "") or state.selected_model())
    if value is None:
        st.caption(NOT_CALIBRATED)
    elif value:
        st.caption(f"Looks like the training data of `{model}`: {measured(result)}.")
    else:
        st.warning(unfamiliar_text(result, model), icon=":material/help:")
