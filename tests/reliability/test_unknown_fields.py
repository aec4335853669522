"""An unknown top-level field (``"taget"`` for ``"target"``) is a 400 naming it on every endpoint and technique —
a typo must not silently run the default — while every field the product's own client sends is still taken.
In process, over the registry."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.http import ConvLensClient
from convlens import registry
from convlens.corpus import datasets as store
from handlers.activations import ActivationsHandler
from handlers.attribution import AttributionHandler
from handlers.base import ConvLensHandler
from handlers.corpus import CorpusHandler
from handlers.prediction import PredictionHandler
from handlers.synthesis import SynthesisHandler
from tests.handlers.conftest import call, form_row, json_row, make_context, no_imagenet_weights, png_bytes  # noqa: F401

HANDLERS: dict[str, type[ConvLensHandler]] = {"prediction": PredictionHandler, "attribution": AttributionHandler,
                                              "activations": ActivationsHandler,
                                              "synthesis": SynthesisHandler, "corpus": CorpusHandler}
TYPOS = ["taget", "Target", "target\n", "params ", "imgae", "modle", "wieghts", "lyaer", "\u0456mage"]


@pytest.fixture(autouse=True)
def own_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "datasets"))
    monkeypatch.setenv("CONVLENS_JOBS_DIR", str(tmp_path / "jobs"))


def handler_for(endpoint: str) -> ConvLensHandler:
    cls = HANDLERS[registry.endpoint_family(endpoint)]
    h = cls()
    h.initialize(make_context(endpoint, batch_size=1))
    return h


def images_for(spec: registry.Spec | None) -> dict[str, Any]:
    png = base64.b64encode(png_bytes()).decode("ascii")
    names = ("image",) if spec is None else spec.inputs
    return {name: [png] if name == registry.BATCH_INPUT else png for name in names}


def method_params(spec: registry.Spec | None) -> dict[str, Any]:
    return {} if spec is None else {registry.METHOD_PARAM: spec.name}


CASES = [(spec.route, spec) for spec in registry.registry().values()]


@pytest.mark.parametrize(("endpoint", "spec"), CASES, ids=[f"{e}-{s.name if s else e}" for e, s in CASES])
def test_an_unknown_top_level_field_is_refused_naming_it(endpoint: str, spec: registry.Spec | None) -> None:
    h = handler_for(endpoint)
    for typo in TYPOS:
        body = {**images_for(spec), "params": method_params(spec), typo: 3}
        [(status, answer)] = call(h, [{"body": body}])
        assert (status, answer["field"]) == (400, typo), (typo, answer)
    if spec is not None and registry.BATCH_INPUT in spec.inputs:
        return  # a form cannot carry a list of images
    files = {k: bytearray(png_bytes()) for k in images_for(spec)}
    [(status, answer)] = call(h, [{**files, **form_row(None, params=method_params(spec), taget="3")}])
    assert (status, answer["field"]) == (400, "taget"), answer


@pytest.mark.parametrize("endpoint", list(registry.endpoints()))
def test_an_info_request_with_an_unknown_field_is_refused(endpoint: str) -> None:
    [(status, answer)] = call(handler_for(endpoint), [json_row(info="layers", modle="builtin")])
    assert (status, answer["field"]) == (400, "modle"), answer


@pytest.mark.parametrize("kind", ["cancel", "status"])
def test_a_cancel_or_status_request_with_an_unknown_field_is_refused(kind: str) -> None:
    [(status, answer)] = call(handler_for("classify"), [json_row(**{kind: "job-1", "endpiont": "neuron"})])
    assert (status, answer["field"]) == (400, "endpiont"), answer


@dataclass
class Answer:
    """What ``requests`` would have returned: the status and the JSON body."""

    status_code: int
    body: dict[str, Any]
    text: str = ""

    def json(self) -> dict[str, Any]:
        return self.body


class RecordingClient(ConvLensClient):
    """The product's client, each of its requests answered in process by the endpoint's handler."""

    def __init__(self) -> None:
        super().__init__("http://in-process")
        self.answers: list[tuple[int, dict[str, Any]]] = []

    def _post_once(self, endpoint: str, body: Any, timeout: float | None = None) -> Any:
        [(status, answer)] = call(handler_for(endpoint), [{"body": dict(body)}])
        self.answers.append((status, answer))
        return Answer(status, answer)


def test_what_the_products_client_sends_is_never_refused_as_unknown() -> None:
    client, png = RecordingClient(), png_bytes()
    calls = [
        lambda: client.classify(png, target=2, topk=3, weights="pretrained"),
        lambda: client.saliency(png, "gradcam", layer="features.3"),
        lambda: client.explain("occlusion", png, params={"window": 8}),
        lambda: client.grids("activations", png, layer="features.3", params={"max_channels": 4}),
        lambda: client.grids("filters", None, layer="features.0", params={"max_filters": 2}),
        lambda: client.codes([png, png]),
        lambda: client.dataset("datasets", params={"action": "list"}),
        lambda: client.dataset("neighbours", params={"dataset": "none"}, image=png),
        lambda: client.corpus("faithfulness", params={"n": 1}),
        lambda: client.synthesis("classviz", target=1, params={"steps": 1, "size": 16}, job="j-1"),
        lambda: client.synthesis("texture:efros_leung", {"image": png}, params={"size": 8, "source_size": 8}),
        lambda: client.techniques(), lambda: client.layers("builtin"), lambda: client.classes(),
        lambda: client.models(), lambda: client.models_list(), lambda: client.cancel("j-1"),
    ]
    if hasattr(client, "submit"):  # a request run as a job: answered at once with its id
        calls.append(lambda: client.submit("classviz", {"model": "builtin", "target": 1, "layer": None,
                                                        "params": {"steps": 1, "size": 16}}))
    for send in calls:
        try:
            send()
        except Exception as exc:  # noqa: BLE001 — an answer refused for another reason still shows its field
            print(repr(exc))
    assert len(client.answers) >= len(calls)
    refused = [a for status, a in client.answers if status >= 400 and "unknown field" in str(a.get("error"))]
    assert not refused, refused
    # refused for other reasons: the neighbours of a dataset that does not exist, cancelling a finished job
    others = [(status, a.get("error")) for status, a in client.answers if status >= 400]
    assert len(others) <= 2, others


def test_a_huge_unknown_field_name_is_named_but_not_echoed_whole() -> None:
    [(status, answer)] = call(handler_for("classify"), [json_row(png_bytes(), **{"x" * 100_000: 1})])
    assert status == 400 and answer["field"].startswith("x" * 100), answer["field"][:200]
    assert len(answer["field"]) <= 101
