"""ConvLens dashboard entry point: ``streamlit run dashboard/streamlit_app.py``.

The sidebar holds the model picker (every model that loads, with a badge for its weights: built-in, ImageNet,
yours, random; unavailable models listed with the reason) and the API status. The page list comes from the
server's registry (:mod:`dashboard.navigation`): each family's generic page (:mod:`dashboard.family_view`) and
the special pages of ``dashboard/app_pages/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts only this folder on the path; the pages (run by st.navigation in this process) rely on this
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from client.http import ApiError  # noqa: E402
from dashboard import family_view, navigation, state  # noqa: E402
from dashboard.widgets import model_badge  # noqa: E402  (its WEIGHT_BADGES: built-in, ImageNet, yours, random)


def sidebar() -> None:
    with st.sidebar:
        st.title("ConvLens")
        status = state.api_status()
        if status.reachable and status.authorised:
            st.success("API: connected", icon=":material/check_circle:")
        elif status.reachable:
            st.error(f"API: refused ({status.detail})", icon=":material/lock:")
        else:
            st.error(f"API: {status.detail}. Start it with `make run`.", icon=":material/cloud_off:")
        try:
            models = state.models()
        except ApiError as exc:
            st.caption(f"Model list unavailable: {exc.message}")
            return
        usable = [m for m in models if m.available]  # an unavailable model cannot be chosen: it cannot be loaded
        names = [m.name for m in usable]
        info = {m.name: m for m in usable}
        if not names:
            st.warning("The server offers no model that loads.")
            return
        current = state.selected_model()
        if st.session_state.get("model") not in (None, *names):  # removed, or unavailable since it was chosen
            del st.session_state["model"]
        st.selectbox(
            "Model", names, index=names.index(current) if current in names else 0, key="model",
            format_func=lambda n: f"{n} — {model_badge(info[n])[0]}",
        )
        chosen = info[st.session_state["model"]]
        if chosen.weights == "missing":
            st.warning(f"{chosen.name}: pretrained weights are not installed on the server; "
                       f"{chosen.fetch_hint or 'fetch them first'}.")
        else:
            facts = [chosen.description, f"{chosen.num_classes} classes", f"{chosen.input_size} px input"]
            st.caption(" · ".join(f for f in facts if f))
        for m in models:
            if not m.available:
                st.caption(f":red-badge[unavailable] **{m.name}** cannot be chosen: {m.reason or 'no reason given'}")


st.set_page_config(page_title="ConvLens", page_icon=":material/visibility:", layout="wide")
sidebar()
try:
    catalogue = state.techniques()
except ApiError as exc:  # the page list comes from the server's registry
    st.error(f"The API could not list its techniques: {exc.message}", icon=":material/error:")
    st.stop()
groups = navigation.plan(catalogue)
st.navigation(navigation.streamlit_pages(groups, family_view.page), expanded=True).run()  # every page listed
