"""The Models page and the sidebar's model picker, driven with streamlit.testing against a fake client."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from client.http import ApiError, ModelInfo
from tests.dashboard.conftest import FakeClient, registered_card, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "app_pages" / "models.py")
APP = str(ROOT / "dashboard" / "streamlit_app.py")
TWENTY = [f"class{k}" for k in range(20)]
BROKEN_REASON = "weights.file: 'weights.safetensors' is not a valid safetensors file (truncated?)"


def canned() -> FakeClient:
    """The built-in models, one model of your own, a shipped one and one that fails its check."""
    return FakeClient(registered=[
        ModelInfo("digits", "Handwritten digits", "registered", 10, 28,
                  card=registered_card("digits", "torchvision:resnet18", [str(d) for d in range(10)], 28)),
        ModelInfo("defects", "Defects on line 3", "registered", 20, 224,
                  card={**registered_card("defects", classes=TWENTY), "description": "Defects on line 3"}),
        ModelInfo("broken", "", "registered", None, None, status="unavailable", reason=BROKEN_REASON),
    ])


def text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)


def fill_form(at: AppTest, name: str = "parts", weights: tuple[str, bytes] = ("parts.safetensors", b"\0w")) -> None:
    at.text_input(key="mdl_name").set_value(name)
    at.text_input(key="mdl_arch").set_value("resnet18")
    at.file_uploader(key="mdl_weights").set_value((weights[0], weights[1], "application/octet-stream"))
    at.text_area(key="mdl_classes").set_value("ok\nscratch\n\ndent\n")
    at.text_input(key="mdl_kwargs").set_value('{"num_classes": 3}')
    at.run()


def test_the_page_shows_one_card_per_model_from_the_info_api() -> None:
    at = run_page(PAGE, canned())
    assert not at.exception
    shown = text(at)
    for words in ("**defects** :green-badge[yours]", "`torchvision:resnet18`", "**Classes** 20: class0, class1",
                  "class7, … (+12 more)", "**Parameters** 11,178,051", "**Layers** 67 · Grad-CAM `layer4`",
                  "`weights.safetensors`", f"**SHA-256** `{'ab' * 32}`", "224 px (resized to 224), 3 channels",
                  "Defects on line 3", "**builtin** :blue-badge[built-in]", "**alexnet** :violet-badge[ImageNet]",
                  "**vgg16** :orange-badge[weights missing]", "**broken** :red-badge[unavailable]"):
        assert words in shown, words
    assert any(BROKEN_REASON in e.value for e in at.error)
    assert [w.value for w in at.warning] == ["Pretrained weights are not installed on the server; fetch it with "
                                             "`convlens weights fetch vgg16`."]
    removable = sorted(b.key for b in at.button if b.key and b.key.startswith("mdl_rm_"))
    assert removable == ["mdl_rm_broken", "mdl_rm_defects"], "shipped and built-in models are never removable"
    assert at.button(key="mdl_add").disabled and "Still needed: a name, an architecture, a weights file, classes" \
        in text(at)


def test_a_built_in_models_card_is_shown_too_without_the_fields_it_lacks() -> None:
    """A built-in model's card (architecture, classes, preprocessing, parameters, layer count) has no Grad-CAM or
    code layer, and no weights hash when its weights are not installed."""
    client = canned()
    card = {"name": "vgg16", "description": "VGG-16", "kind": "torchvision", "source": "torchvision:vgg16",
            "classes": [f"c{k}" for k in range(1000)], "input_size": 224, "resize_size": 256, "channels": 3,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "parameters": 138_357_544,
            "weights_file": "vgg16-397923af.pth", "layer_count": 39, "weights_sha256": None}
    client.models = lambda: [ModelInfo("vgg16", "VGG-16", "missing", 1000, 224, "fetch it first", card=card)]  # type: ignore[method-assign]
    at = run_page(PAGE, client)
    assert not at.exception
    shown = text(at)
    for words in ("**vgg16** :orange-badge[weights missing]", "`torchvision:vgg16`", "**Classes** 1000: c0, c1",
                  "(+992 more)", "224 px (resized to 256), 3 channels", "**Parameters** 138,357,544",
                  "**Layers** 39  \n**Weights** `vgg16-397923af.pth`", "the weights are not on the server", "VGG-16"):
        assert words in shown, words
    assert [w.value for w in at.warning] == ["Pretrained weights are not installed on the server; fetch it first."]
    assert not [b for b in at.button if b.key == "mdl_rm_vgg16"]


def test_submitting_the_form_sends_the_fields_and_shows_the_card() -> None:
    client = canned()
    at = run_page(PAGE, client)
    fill_form(at)
    assert not at.button(key="mdl_add").disabled
    at.button(key="mdl_add").click().run()
    assert not at.exception and [e.value for e in at.error] == [f"Unavailable: {BROKEN_REASON}"]
    [sent] = [c for c in client.calls if "model_add" in c]
    assert sent == {"model_add": "parts", "source": "torchvision:resnet18", "weights": b"\0w",
                    "classes": ["ok", "scratch", "dent"], "weights_format": "safetensors", "input_size": 224,
                    "resize_size": None, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channels": 3,
                    "kwargs": {"num_classes": 3}, "description": "", "key": None, "strip_prefix": []}
    assert any("Added parts" in s.value for s in at.success)
    assert "**parts** :green-badge[yours]" in text(at) and "**Classes** 3: ok, scratch, dent" in text(at)


def test_a_timm_model_from_a_checkpoint_leaves_the_defaults_to_timm() -> None:
    client = canned()
    at = run_page(PAGE, client)
    at.radio(key="mdl_kind").set_value("timm").run()
    fill_form(at, weights=("ckpt.pth", b"\1pt"))
    at.text_input(key="mdl_key").set_value("state_dict")
    at.text_input(key="mdl_strip").set_value("module., model.")
    at.button(key="mdl_add").click().run()
    [sent] = [c for c in client.calls if "model_add" in c]
    assert sent["source"] == "timm:resnet18" and sent["weights_format"] == "pt" and sent["key"] == "state_dict"
    assert sent["strip_prefix"] == ["module.", "model."]
    assert sent["input_size"] is None and sent["mean"] is None and sent["std"] is None and sent["channels"] is None


def test_the_servers_refusal_is_shown_with_its_field() -> None:
    client = canned()
    at = run_page(PAGE, client)
    fill_form(at)
    client.fail = ApiError(400, "'weights.safetensors' is not a valid safetensors file (truncated?)", "params.weights")
    at.button(key="mdl_add").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error if "add parts" in e.value]
    assert "field `params.weights`" in error and "not a valid safetensors file" in error
    assert "parts" not in {m.name for m in client.registered}


def test_bad_input_is_caught_before_anything_is_sent() -> None:
    client = canned()
    at = run_page(PAGE, client)
    fill_form(at, name="Bad Name")
    at.text_input(key="mdl_kwargs").set_value("num_classes=3")
    at.text_input(key="mdl_mean_torchvision").set_value("0.5, half")
    at.run()
    warnings = " ".join(w.value for w in at.warning)
    assert "The name must be" in warnings and "JSON object" in warnings and "The mean must be numbers" in warnings
    assert at.button(key="mdl_add").disabled and not [c for c in client.calls if "model_add" in c]


def test_with_upload_off_the_page_says_so_instead_of_offering_the_form() -> None:
    client = canned()
    client.upload_enabled = False
    at = run_page(PAGE, client)
    assert not at.exception
    assert any("turned model upload off" in i.value and "CONVLENS_MODEL_UPLOAD=1" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("mdl_")]
    assert "**defects** :green-badge[yours]" in text(at)  # the cards are still shown


def test_upload_turned_off_after_the_page_was_drawn_is_explained_not_a_crash() -> None:
    client = canned()
    at = run_page(PAGE, client)
    fill_form(at)
    client.upload_enabled = False  # the listing is cached: the form is still there
    at.button(key="mdl_add").click().run()
    assert not at.exception and [e.value for e in at.error] == [f"Unavailable: {BROKEN_REASON}"]
    assert any("turned model upload off" in w.value for w in at.warning)


def test_remove_removes_your_model() -> None:
    client = canned()
    at = run_page(PAGE, client)
    at.button(key="mdl_rm_defects").click().run()
    assert not at.exception and {"model_remove": "defects"} in client.calls
    assert any("Removed defects" in s.value for s in at.success) and "**defects**" not in text(at)


def test_the_sidebar_lists_every_model_with_a_badge_and_unavailable_ones_with_the_reason() -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = canned()
    at.run()
    assert not at.exception
    picker = at.sidebar.selectbox(key="model")
    assert picker.options == ["builtin — built-in", "alexnet — ImageNet", "vgg16 — weights missing",
                              "digits — yours", "defects — yours"]
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "**broken** cannot be chosen" in captions and BROKEN_REASON in captions
    picker.set_value("defects").run()
    assert "Defects on line 3 · 20 classes · 224 px input" in " ".join(c.value for c in at.sidebar.caption)


def test_a_chosen_model_that_is_removed_falls_back_to_the_first_one() -> None:
    client = canned()
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = client
    at.run()
    at.sidebar.selectbox(key="model").set_value("defects").run()
    client.registered = [m for m in client.registered if m.name != "defects"]
    at.session_state["client"] = client
    st.cache_data.clear()  # the model list is cached for 30 s
    at.run()
    assert not at.exception and at.sidebar.selectbox(key="model").value == "builtin"
