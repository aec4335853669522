"""ConvLens dashboard entry point: ``streamlit run dashboard/streamlit_app.py``.

The sidebar holds the model picker (every model that loads, with a badge for its weights: built-in, ImageNet,
yours, random; unavailable models listed with the reason) and the API status; pages live in
``dashboard/app_pages/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run` puts only this folder on the path

from client.http import ApiError  # noqa: E402
from dashboard import state  # noqa: E402
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
PAGES_DIR = Path(__file__).with_name("app_pages")
pages = {
    "Why this decision?": [
        st.Page(str(PAGES_DIR / "attribution.py"), title="Attribution", icon=":material/target:", default=True),
        st.Page(str(PAGES_DIR / "faithfulness.py"), title="Faithfulness", icon=":material/fact_check:"),
    ],
    "What did it learn?": [
        st.Page(str(PAGES_DIR / "activations.py"), title="Activations", icon=":material/grid_view:"),
        st.Page(str(PAGES_DIR / "filters.py"), title="Filters", icon=":material/filter:"),
    ],
    "What does it imagine?": [
        st.Page(str(PAGES_DIR / "imagine.py"), title="Classes and neurons", icon=":material/auto_awesome:"),
        st.Page(str(PAGES_DIR / "fooling.py"), title="Fooling", icon=":material/theater_comedy:"),
        st.Page(str(PAGES_DIR / "inversion.py"), title="Inversion", icon=":material/flip:"),
        st.Page(str(PAGES_DIR / "deepdream.py"), title="DeepDream", icon=":material/cloud:"),
        st.Page(str(PAGES_DIR / "texture.py"), title="Texture", icon=":material/texture:"),
        st.Page(str(PAGES_DIR / "style.py"), title="Style", icon=":material/palette:"),
        st.Page(str(PAGES_DIR / "fast_style.py"), title="Fast style", icon=":material/bolt:"),
    ],
    "What does it make of a dataset?": [
        st.Page(str(PAGES_DIR / "datasets.py"), title="Datasets", icon=":material/folder:"),
        st.Page(str(PAGES_DIR / "embedding.py"), title="Embedding", icon=":material/scatter_plot:"),
        st.Page(str(PAGES_DIR / "neighbours.py"), title="Neighbours", icon=":material/join:"),
        st.Page(str(PAGES_DIR / "top_patches.py"), title="Top patches", icon=":material/view_module:"),
    ],
    "Which models are there?": [
        st.Page(str(PAGES_DIR / "models.py"), title="Models", icon=":material/model_training:"),
    ],
}
st.navigation(pages, expanded=True).run()  # every page listed: there are more than ten
