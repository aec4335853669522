"""Datasets page: what the server has, and new ones from the built-in generator, the natural sample photos
or an uploaded zip (label subfolders; checked on the server before anything is written)."""

from __future__ import annotations

import re

import streamlit as st

from client.http import ApiError, JobStatus
from dashboard import state, widgets

TITLE, ICON = "Datasets", ":material/folder:"  # how the sidebar lists this page (dashboard.navigation)

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_ZIP_MB = 11  # the API's request limit is 16 MB; base64 adds a third


def create(name: str, params: dict[str, object]) -> bool:
    """Create a dataset with a progress bar (a large one is a job on the server, polled); leaving the page
    meanwhile cancels the job, and the server removes what it had written."""
    bar = st.progress(0.0, text=f"Creating {name}…")
    running: list[str] = []

    def show(job: JobStatus) -> None:
        running[:] = [] if job.finished else [job.job]
        bar.progress(min(1.0, job.step / job.total) if job.total else 0.0,
                     text=f"Creating {name}: {job.step:,} of {job.total:,} images ({job.state})")

    done = widgets.cancellable(lambda: state.change_datasets(on_job=show, **params) or True,
                               lambda: running[0] if running else None, bar, f"create {name}")
    return done is not None


def page() -> None:
    st.header("Datasets")
    st.caption("Named folders of images on the server (subfolders are labels, as torchvision's ImageFolder). "
               "The Embedding, Neighbours and Top patches pages work on them.")
    try:
        rows = state.datasets()
    except ApiError as exc:
        widgets.api_error(exc, "list the datasets")
        return
    if rows:
        st.dataframe([{k: r[k] for k in ("name", "images", "classes", "source", "skipped")} for r in rows],
                     hide_index=True, width="stretch", key="ds_table")
    else:
        st.info("No dataset yet: create one below (10,000 built-in images take about a minute).")
    st.subheader("New dataset")
    source = st.radio("Source", ["Built-in generator", "Natural photos", "Upload a zip"], horizontal=True,
                      key="ds_source")
    name = st.text_input("Name", value="shapes10k" if source == "Built-in generator" else "", key="ds_name",
                         help="a-z, 0-9, '_' and '-'")
    params: dict[str, object] = {"name": name}
    if source == "Built-in generator":
        params.update(action="builtin", n=int(st.number_input("Images", 10, 100_000, 10_000, 1000, key="ds_n")))
    elif source == "Natural photos":
        params.update(action="natural")
    else:
        upload = st.file_uploader(f"Zip of images (≤ {MAX_ZIP_MB} MB; label subfolders)", type=["zip"],
                                  key="ds_zip")
        if upload is not None:
            import base64

            params.update(action="import", archive=base64.b64encode(upload.getvalue()).decode("ascii"))
    ready = bool(NAME.fullmatch(name)) and "action" in params
    if name and not NAME.fullmatch(name):
        st.warning("Names are 1-64 characters of a-z, 0-9, '_' and '-'.")
    if st.button("Create", disabled=not ready, key="ds_create", type="primary"):
        if not create(name, params):
            return
        st.success(f"Created {name}.")
        st.rerun()
    if rows:
        st.subheader("Remove")
        doomed = st.selectbox("Dataset", [r["name"] for r in rows], key="ds_remove_name")
        if st.button("Remove", key="ds_remove"):
            try:
                state.change_datasets(action="remove", name=doomed)
            except ApiError as exc:
                widgets.api_error(exc, f"remove {doomed}")
                return
            st.rerun()


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
