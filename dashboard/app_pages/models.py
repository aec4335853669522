"""Models page: every model the server offers, one card each (architecture, classes, input, parameters, weights
file and SHA-256, layers), and your own models: add one from a weights file (the server checks it exactly as
``convlens model add`` does and writes nothing unless it checks) or remove one. Adding and removing need the
operator's ``CONVLENS_MODEL_UPLOAD=1``; the page says so when it is off."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import streamlit as st

from client.http import ApiError, ModelFiles, ModelInfo, weights_format
from dashboard import state, widgets

TITLE, ICON = "Models", ":material/model_training:"  # how the sidebar lists this page (dashboard.navigation)
GROUP = "Which models are there?"

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# The dashboard takes files up to 10 MB (streamlit --server.maxUploadSize 10); the API itself takes about 12 MB of
# weights (16 MiB requests, base64 adds a third). Larger models: `convlens model add` on the server.
MAX_WEIGHTS_MB = 10
CLASSES_SHOWN = 8
IMAGENET_MEAN, IMAGENET_STD = "0.485, 0.456, 0.406", "0.229, 0.224, 0.225"
UPLOAD_OFF = ("The operator has turned model upload off on this server: models cannot be added or removed from "
              "here. To allow it, start the server with `CONVLENS_MODEL_UPLOAD=1` (`make run` does; with docker "
              "compose set it in `.env`). On the server, `convlens model add` always works (docs/models.md).")


def _numbers(values: Any) -> str:
    return ", ".join(f"{v:g}" for v in values or [])


def card_facts(card: Mapping[str, Any]) -> None:
    """A model's card, in two columns; what a card does not hold (a built-in model's has no weights hash when its
    weights are not installed) is left out."""
    classes = list(card.get("classes") or [])
    shown = ", ".join(classes[:CLASSES_SHOWN]) + (f", … (+{len(classes) - CLASSES_SHOWN} more)"
                                                 if len(classes) > CLASSES_SHOWN else "")
    if card.get("description"):
        st.caption(str(card["description"]))
    left: list[str] = []
    right: list[str] = []
    if card.get("source"):
        left.append(f"**Architecture** `{card['source']}`")
    left.append(f"**Classes** {len(classes)}: {shown}")
    if card.get("input_size"):
        channels = card.get("channels") or 3
        left.append(f"**Input** {card['input_size']} px (resized to {card.get('resize_size') or card['input_size']}), "
                    f"{channels} channel{'s' if channels != 1 else ''}")
    if card.get("mean") and card.get("std"):
        left.append(f"**Mean** {_numbers(card['mean'])} · **std** {_numbers(card['std'])}")
    if card.get("parameters") is not None:
        right.append(f"**Parameters** {int(card['parameters']):,}")
    layers = [f"**Layers** {card['layer_count']}"] if card.get("layer_count") is not None else []
    layers += [f"{what} `{card[key]}`" for what, key in (("Grad-CAM", "cam_layer"), ("code", "code_layer"))
               if card.get(key)]
    if layers:
        right.append(" · ".join(layers))
    if card.get("weights_file"):
        right.append(f"**Weights** `{card['weights_file']}`")
    right.append(f"**SHA-256** `{card['weights_sha256']}`" if card.get("weights_sha256") else
                 "**SHA-256** — (the weights are not on the server)")
    left_column, right_column = st.columns(2)
    left_column.markdown("  \n".join(left))
    right_column.markdown("  \n".join(right))


def builtin_facts(m: ModelInfo) -> None:
    st.caption(m.description)
    st.markdown(f"**Classes** {m.num_classes} · **Input** {m.input_size} px")


def show_model(m: ModelInfo, removable: bool) -> None:
    label, colour = widgets.model_badge(m)
    with st.container(border=True, key=f"mdl_card_{m.name}"):
        st.markdown(f"**{m.name}** :{colour}-badge[{label}]")
        if not m.available:
            st.error(f"Unavailable: {m.reason or 'no reason given'}", icon=":material/block:")
        elif m.card:
            card_facts({"description": m.description, **m.card})
        else:
            builtin_facts(m)
        if m.weights == "missing":
            st.warning(f"Pretrained weights are not installed on the server; {m.fetch_hint or 'fetch them first'}.")
        if removable and st.button("Remove", key=f"mdl_rm_{m.name}", icon=":material/delete:"):
            try:
                state.remove_model(m.name)
            except ApiError as exc:
                widgets.api_error(exc, f"remove {m.name}")
                return
            st.session_state["mdl_flash"] = {"removed": m.name}
            st.rerun()


def _floats(text: str, what: str, problems: list[str]) -> list[float] | None:
    if not text.strip():
        return None
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        problems.append(f"{what} must be numbers separated by commas")
        return None


def _kwargs(text: str, problems: list[str]) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        problems.append('keyword arguments must be a JSON object, e.g. {"num_classes": 3}')
        return None
    return value or None


def add_form() -> None:
    """Name, architecture, weights, classes, preprocessing; Add sends them and shows the card or the refusal."""
    problems: list[str] = []
    name = st.text_input("Name", key="mdl_name", help="1-64 characters of a-z, 0-9, '_' and '-'")
    if name and not NAME.fullmatch(name):
        problems.append("the name must be 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit")
    left, right = st.columns([1, 2])
    kind = left.radio("Architecture", ["torchvision", "timm"], horizontal=True, key="mdl_kind")
    arch = right.text_input(f"{kind} model", key="mdl_arch", placeholder="resnet18",
                            help="the builder's name, e.g. resnet18 (torchvision) or resnet10t (timm); built with "
                                 "random weights, nothing is downloaded").strip()
    upload = st.file_uploader(f"Weights: .safetensors, or a .pt/.pth state dict (at most {MAX_WEIGHTS_MB} MB here)",
                              type=["safetensors", "pt", "pth"], key="mdl_weights", max_upload_size=MAX_WEIGHTS_MB,
                              help="Larger models are added on the server: `convlens model add` (docs/models.md).")
    fmt = weights_format(upload.name) if upload is not None else "safetensors"
    checkpoint_key, strip = "", ""
    if fmt == "pt":
        left, right = st.columns(2)
        checkpoint_key = left.text_input("Key of the state dict in the checkpoint", key="mdl_key",
                                         placeholder="state_dict (empty: the file is the state dict)").strip()
        strip = right.text_input("Prefixes to strip from its keys", key="mdl_strip", placeholder="module.")
    classes_text = st.text_area("Classes, one a line", key="mdl_classes", height=120)
    classes_file = st.file_uploader("… or a text file of classes, one a line", type=["txt"], key="mdl_classes_file")
    if classes_file is not None:
        try:
            classes_text = classes_file.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{classes_file.name} is not UTF-8 text")
    classes = [line.strip() for line in classes_text.splitlines() if line.strip()]
    preprocessing = preprocessing_fields(kind, problems)
    description = st.text_input("Description (optional)", key="mdl_description")
    missing = [what for what, given in (("a name", name), ("an architecture", arch), ("a weights file", upload),
                                        ("classes", classes)) if not given]
    for problem in problems:
        st.warning(problem[0].upper() + problem[1:] + ".")
    if missing:
        st.caption(f"Still needed: {', '.join(missing)}.")
    if not st.button("Add model", key="mdl_add", type="primary", disabled=bool(missing or problems)):
        return
    assert upload is not None
    fields: dict[str, Any] = {
        "weights_format": fmt, **preprocessing, "description": description, "key": checkpoint_key or None,
        "strip_prefix": [p.strip() for p in strip.split(",") if p.strip()],
    }
    submit(name, f"{kind}:{arch}", upload.getvalue(), classes, fields)


def preprocessing_fields(kind: str, problems: list[str]) -> dict[str, Any]:
    """Input size, resize, channels, mean and std (timm's defaults when left empty for a timm model) and the
    builder's keyword arguments; what cannot be read is added to ``problems``."""
    timm = kind == "timm"
    default = " (empty: timm's default)" if timm else ""
    c1, c2, c3 = st.columns(3)
    input_size = c1.number_input(f"Input size, px{default}", min_value=8, max_value=1024, step=1,
                                 value=None if timm else 224, key=f"mdl_input_{kind}")
    resize_size = c2.number_input("Resize shorter side to, px (empty: the input size)", min_value=8, max_value=2048,
                                  step=1, value=None, key=f"mdl_resize_{kind}")
    channels = c3.selectbox("Channels", [None, 3, 1] if timm else [3, 1], key=f"mdl_channels_{kind}",
                            format_func=lambda c: "timm's default" if c is None else str(c))
    c1, c2 = st.columns(2)
    mean = _floats(c1.text_input(f"Mean, one per channel{default}", "" if timm else IMAGENET_MEAN,
                                 key=f"mdl_mean_{kind}"), "the mean", problems)
    std = _floats(c2.text_input(f"Std, one per channel{default}", "" if timm else IMAGENET_STD,
                                key=f"mdl_std_{kind}"), "the std", problems)
    kwargs = _kwargs(st.text_input("Keyword arguments of the builder (JSON object)", key="mdl_kwargs",
                                   placeholder='{"num_classes": 3}'), problems)
    return {"input_size": None if input_size is None else int(input_size),
            "resize_size": None if resize_size is None else int(resize_size), "channels": channels, "mean": mean,
            "std": std, "kwargs": kwargs}


def submit(name: str, source: str, weights: bytes, classes: list[str], fields: dict[str, Any]) -> None:
    """Add the model on the server; its card is shown after the rerun, a refusal at once."""
    with st.spinner(f"Checking {name} on the server…"):
        try:
            card = state.add_model(name, source, weights, classes, **fields)
        except ApiError as exc:
            if exc.field == "params.action":  # the operator turned upload off since the page was drawn
                st.warning(f"{UPLOAD_OFF} ({exc.message})", icon=":material/lock:")
            else:
                widgets.api_error(exc, f"add {name}")
            return
    st.session_state["mdl_flash"] = {"added": card}
    st.rerun()


def page() -> None:
    st.header("Models")
    st.caption("Every model the server offers. Your own: a torchvision or timm architecture with your weights and "
               "classes, checked on the server (the weights load with every key matching, one forward pass gives "
               "one logit per class) before it is listed; see docs/models.md.")
    flash = st.session_state.pop("mdl_flash", None)
    if flash and "added" in flash:
        card = flash["added"]
        with st.container(border=True, key="mdl_added"):
            st.success(f"Added {card['name']}: pick it in the sidebar's model picker.", icon=":material/check:")
            card_facts(card)
    elif flash and "removed" in flash:
        st.success(f"Removed {flash['removed']}.", icon=":material/delete:")
    try:
        models = state.models()
    except ApiError as exc:
        widgets.api_error(exc, "list the models")
        return
    files: ModelFiles | None
    try:
        files = state.model_files()
    except ApiError as exc:
        files = None
        st.caption(f"Adding and removing models is not available: {exc.message}")
    removable = set() if files is None or not files.upload_enabled else {e.name for e in files.models if e.removable}
    yours = [m for m in models if m.weights == "registered"]
    others = [m for m in models if m.weights != "registered"]
    for title, group in (("Your models", yours), ("Built-in models", others)):
        if not group:
            continue
        st.subheader(title)
        columns = st.columns(2)
        for k, m in enumerate(group):
            with columns[k % 2]:
                show_model(m, m.name in removable)
    if not yours:
        st.info("No model of your own yet: add one below, or with `convlens model add` on the server.")
    st.subheader("Add a model")
    if files is None:
        return
    if not files.upload_enabled:
        st.info(UPLOAD_OFF, icon=":material/lock:")
        return
    add_form()


if __name__ == "__main__":  # run as a page (st.navigation, AppTest); imported, it only describes itself
    page()
