"""What every page shares: the API client, the chosen model, cached API answers.

A test puts a fake client into ``st.session_state["client"]``; otherwise one real
client is created per process from ``CONVLENS_URL`` and the TorchServe token.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from client.http import (
    ApiError,
    ApiStatus,
    ConvLensClient,
    JobStatus,
    LayerCatalogue,
    ModelFiles,
    ModelInfo,
    TechniqueInfo,
)
from client.results import Result
from convlens.schema import DATASETS, AttributionResponse, CorpusResponse, GridsResponse, route

SAMPLES_DIR = Path(__file__).with_name("samples")
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]


@st.cache_resource
def _real_client() -> ConvLensClient:
    return ConvLensClient()  # $CONVLENS_URL, token from $CONVLENS_KEY_FILE


def get_client() -> Any:
    """The session's client (a test's fake if one was put in ``session_state``)."""
    return st.session_state.get("client") or _real_client()


def selected_model() -> str:
    return str(st.session_state.get("model", "builtin"))


def api_status() -> ApiStatus:
    return get_client().ping()


@st.cache_data(ttl=30, max_entries=4, show_spinner=False)
def _models(_client: Any, key: str) -> list[ModelInfo]:
    return list(_client.models())


def models() -> list[ModelInfo]:
    client = get_client()
    return _models(client, f"{id(client)}")


@st.cache_data(ttl=15, max_entries=4, show_spinner=False)
def _model_files(_client: Any, key: str) -> ModelFiles:
    return _client.models_list()


def model_files() -> ModelFiles:
    """The server's models directory and whether it takes uploads (``CONVLENS_MODEL_UPLOAD``), cached for 15 s."""
    client = get_client()
    return _model_files(client, f"{id(client)}")


def add_model(name: str, source: str, weights: bytes, classes: list[str] | str, **fields: Any) -> dict[str, Any]:
    """Add a model on the server (checked there like ``convlens model add``); its card. Every cached answer is
    dropped: the model list changed, and a model of the same name may have been replaced."""
    card = get_client().model_add(name, source, weights, classes, **fields)
    st.cache_data.clear()
    return dict(card)


def remove_model(name: str) -> None:
    """Remove a model of the server's models directory; every cached answer is dropped (see :func:`add_model`)."""
    get_client().model_remove(name)
    st.cache_data.clear()


@st.cache_data(max_entries=16, show_spinner=False)
def _layers(_client: Any, key: str, model: str) -> LayerCatalogue:
    return _client.layers(model)


def layers(model: str) -> LayerCatalogue:
    client = get_client()
    return _layers(client, f"{id(client)}", model)


@st.cache_data(max_entries=64, show_spinner=False)
def _call(_client: Any, key: str, endpoint: str, image_digest: str, _image: bytes, model: str,
          target: int | None, layer: str | None, params: tuple[tuple[str, Any], ...]) -> AttributionResponse:
    return _client.explain(endpoint, _image, model=model, target=target, layer=layer, params=dict(params))


def call(endpoint: str, image: bytes, model: str, target: int | None = None, layer: str | None = None,
         **params: Any) -> AttributionResponse:
    """A cached API call: the same image and settings are answered from memory (bounded)."""
    client = get_client()
    digest = hashlib.sha256(image).hexdigest()
    return _call(client, f"{id(client)}", endpoint, digest, image, model, target, layer, tuple(sorted(params.items())))


@st.cache_data(ttl=300, max_entries=4, show_spinner=False)
def _techniques(_client: Any, key: str) -> list[TechniqueInfo]:
    return list(_client.techniques())


def request_of(info: TechniqueInfo) -> tuple[str, dict[str, Any]]:
    """The endpoint a technique is posted to and the params that name it (``convlens.schema.route``): the one place
    the dashboard turns a technique into a request."""
    return route(info.name, info.endpoint)


def served_by(page_file: str) -> list[TechniqueInfo]:
    """The techniques a special page shows (those whose registry ``page`` is the page module's name)."""
    page = Path(page_file).stem
    return [t for t in techniques() if t.page == page]


def technique(name: str) -> TechniqueInfo:
    """A technique the server declares, by name (e.g. ``convlens.schema.DATASETS``)."""
    return next(t for t in techniques() if t.name == name)


def result(info: TechniqueInfo, response: Any) -> Result:
    """A response read through its technique's declared outputs."""
    return Result(response, info.outputs)


def techniques(family: str | None = None) -> list[TechniqueInfo]:
    """The server's techniques (from its registry), optionally of one family, in display order."""
    client = get_client()
    found = _techniques(client, f"{id(client)}")
    return [t for t in found if family is None or t.family == family]


@st.cache_data(max_entries=32, show_spinner=False)
def _grids(_client: Any, key: str, endpoint: str, image_digest: str | None, _image: bytes | None, model: str,
           layer: str | None, params: tuple[tuple[str, Any], ...]) -> GridsResponse:
    return _client.grids(endpoint, _image, model=model, layer=layer, params=dict(params))


def grids(endpoint: str, image: bytes | None, model: str, layer: str | None = None, **params: Any) -> GridsResponse:
    """A cached call to an activations-family endpoint (an image, or none for filter galleries)."""
    client = get_client()
    digest = None if image is None else hashlib.sha256(image).hexdigest()
    return _grids(client, f"{id(client)}", endpoint, digest, image, model, layer, tuple(sorted(params.items())))


def _digest(data: bytes | list[bytes]) -> str:
    """An image's digest, or a batch's (one digest per image, in order)."""
    if isinstance(data, list):
        return hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in data)).hexdigest()
    return hashlib.sha256(data).hexdigest()


CORPUS_ANSWERS_KEPT = 32


@st.cache_resource
def _corpus_answers() -> OrderedDict[tuple[Any, ...], CorpusResponse]:
    """Corpus answers of this dashboard process, newest last. Not ``st.cache_data``: a corpus call reports its
    job's progress into the calling page's elements, which a cache replay in another session cannot find."""
    return OrderedDict()


def corpus(endpoint: str, model: str, on_job: Callable[[JobStatus], None] | None = None, layer: str | None = None,
           images: dict[str, Any] | None = None, **params: Any) -> CorpusResponse:
    """A cached call to a corpus-family endpoint (these take seconds to minutes: cache them). A long one runs as a
    job on the server; ``on_job`` sees its progress as it is polled."""
    client = get_client()
    digests = tuple(f"{n}:{_digest(d)}" for n, d in sorted((images or {}).items()))
    key = (id(client), endpoint, model, tuple(sorted(params.items())), layer, digests)
    answers = _corpus_answers()
    if key in answers:
        answers.move_to_end(key)
        return answers[key]
    extra = {"layer": layer, "images": images} if layer is not None or images else {}
    answers[key] = client.corpus(endpoint, model=model, params=dict(params), on_job=on_job, **extra)
    while len(answers) > CORPUS_ANSWERS_KEPT:
        answers.popitem(last=False)
    return answers[key]


@st.cache_data(max_entries=16, show_spinner=False)
def _dataset(_client: Any, key: str, method: str, model: str, layer: str | None, image_digest: str | None,
             _image: bytes | None, params: tuple[tuple[str, Any], ...]) -> CorpusResponse:
    return _client.dataset(method, model=model, layer=layer, params=dict(params), image=_image)


def dataset(method: str, model: str, layer: str | None = None, image: bytes | None = None,
            **params: Any) -> CorpusResponse:
    """A cached call to the dataset endpoint (embedding, neighbours, top patches, thumbnails)."""
    client = get_client()
    digest = None if image is None else hashlib.sha256(image).hexdigest()
    return _dataset(client, f"{id(client)}", method, model, layer, digest, image, tuple(sorted(params.items())))


@st.cache_data(ttl=15, max_entries=4, show_spinner=False)
def _datasets(_client: Any, key: str) -> list[dict[str, Any]]:
    return list(_client.dataset(DATASETS, params={"action": "list"}).items)


def datasets() -> list[dict[str, Any]]:
    """The datasets on the server, cached for 15 s (listing fingerprints every file of every dataset: ~0.5 s
    with 60,000 images) and dropped whenever this dashboard changes them."""
    client = get_client()
    return _datasets(client, f"{id(client)}")


def change_datasets(on_job: Callable[[JobStatus], None] | None = None, **params: Any) -> list[dict[str, Any]]:
    """Create or remove a dataset; the caches of answers about datasets are dropped. A large one is made by a job
    on the server: ``on_job`` sees its progress."""
    items = list(get_client().dataset(DATASETS, params=params, on_job=on_job).items)
    _dataset.clear()
    _datasets.clear()
    _corpus_answers().clear()
    return items


def samples(collection: str = "") -> dict[str, Path]:
    """Sample images shipped with the dashboard, by display name: the built-in model's scenes, or a
    ``collection`` (``photos``, ``styles``, ``textures``: natural images from scikit-image)."""
    folder = SAMPLES_DIR / collection if collection else SAMPLES_DIR
    return {p.stem.replace("_", " "): p for p in sorted(folder.glob("*.png"))}


__all__ = ["ApiError"]  # re-exported for the pages (the functions above are the module's own)
