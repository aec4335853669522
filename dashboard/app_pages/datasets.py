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
IMAGES_PER_SECOND = 500  # the built-in generator's pace on the server, one core (convlens.techniques.corpus.work)
MAX_BUILTIN = 1_000_000  # the server's limit (convlens.corpus.datasets.MAX_BUILTIN)


DONE_KEY = "ds_outcome"  # what the last change did, said after the rerun that lists it


def create(name: str, params: dict[str, object]) -> dict[str, object] | None:
    """Create a dataset with a progress bar, an estimate of the time left and a Stop button (a large one is a job
    on the server, polled); pressing Stop or leaving the page meanwhile cancels the job, and the server removes
    what it had written. Its row of the server's list, or None after an error (shown)."""
    panel = st.empty()  # the bar and Stop while the job runs; cleared when it ends
    with panel.container():
        bar = st.progress(0.0, text=f"Creating {name}… {first_estimate(params)}")
        # Pressing Stop reruns the page, which interrupts the wait below: widgets.cancellable cancels the job.
        st.button("Stop", key="ds_stop", icon=":material/stop:",
                  help="Cancel the creation; the server stops and removes the images written so far")
    running: list[str] = []
    follow = widgets.job_progress(bar, f"Creating {name}", note="")

    def show(job: JobStatus) -> None:
        running[:] = [] if job.finished else [job.job]
        follow(job)

    rows = widgets.cancellable(lambda: state.change_datasets(on_job=show, **params),
                               lambda: running[0] if running else None, panel, f"create {name}")
    if rows is None:
        return None
    row: dict[str, object] = next((r for r in rows if r.get("name") == name), {"name": name})
    return row


def first_estimate(params: dict[str, object]) -> str:
    """What to expect before the server reports progress: generated images come at about
    :data:`IMAGES_PER_SECOND`."""
    n = params.get("n")
    if params.get("action") == "builtin" and isinstance(n, int):
        seconds = n / IMAGES_PER_SECOND
        if seconds < 5:
            return "a few seconds"
        return f"about {seconds:.0f} s for {n:,} images" if seconds < 90 else \
            f"up to {seconds / 60:.0f} min for {n:,} images"
    return ""


def outcome(row: dict[str, object]) -> str:
    """The success message of a creation: the dataset's name and size."""
    images, classes = row.get("images"), row.get("classes")
    size = f"{images:,} images" if isinstance(images, int) else "its images"
    return f"Created **{row['name']}**: {size}" + (f" in {classes} classes." if isinstance(classes, int) else ".")


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
        n = st.number_input("Images", 10, MAX_BUILTIN, 10_000, 1000, key="ds_n",
                            help="about 16 kB of the server's disk an image: 1,000,000 take about 16 GB")
        params.update(action="builtin", n=int(n))
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
        row = create(name, params)
        if row is None:
            return
        st.session_state[DONE_KEY] = outcome(row)
        st.rerun()  # the table above lists it; the message is said once, after the rerun
    said = st.session_state.pop(DONE_KEY, None)
    if said:
        st.success(said, icon=":material/check_circle:")
    if rows:
        st.subheader("Remove")
        doomed = st.selectbox("Dataset", [r["name"] for r in rows], key="ds_remove_name")
        if st.button("Remove", key="ds_remove"):
            try:
                with st.spinner(f"Removing {doomed}…"):
                    state.change_datasets(action="remove", name=doomed)
            except ApiError as exc:
                widgets.api_error(exc, f"remove {doomed}")
                return
            st.session_state[DONE_KEY] = f"Removed **{doomed}**."
            st.rerun()


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
