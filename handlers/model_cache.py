"""A worker's models: the bounded cache of loaded ones, the device they run on, and what a request may build.

Built-in models come from :mod:`convlens.models`; registered ones (a folder in the models directory, see
:mod:`convlens.zoo` and docs/models.md) load through the same :func:`convlens.models.load_model` and are keyed
by their folder's version, so an edited model is loaded afresh. Random weights are built only for the models on
the operator's allow-list (``$CONVLENS_RANDOM_WEIGHTS_MODELS``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from convlens import models as zoo
from convlens.schema import SchemaError
from handlers.errors import RequestError

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 3
CACHE_SIZE_ENV = "CONVLENS_MODEL_CACHE_SIZE"
RANDOM_WEIGHTS_ENV = "CONVLENS_RANDOM_WEIGHTS_MODELS"
# What a client may make a worker build with random weights (each build allocates the whole network; the
# LRU cache holds `cache_size` of them). The large ones (VGG, ResNet-50/101, AlexNet: 100-550 MB each) only
# if the operator lists them: CONVLENS_RANDOM_WEIGHTS_MODELS="builtin,resnet18" or "all".
DEFAULT_RANDOM_WEIGHTS_MODELS = ("builtin", "resnet18", "squeezenet1_1", "googlenet", "densenet121")


@dataclass
class ModelCache:
    """A bounded LRU cache of loaded models, keyed by (name, weights choice, version); ``capacity`` (the handler's
    ``cache_size`` or ``$CONVLENS_MODEL_CACHE_SIZE``) bounds how many distinct models a worker holds."""

    capacity: int
    loader: Callable[[str, str], zoo.LoadedModel]
    _items: OrderedDict[tuple[str, str, str], zoo.LoadedModel] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, weights: str) -> zoo.LoadedModel:
        """A registered model is keyed by its folder's version too: edited files are loaded afresh."""
        key = (name, weights, zoo.model_version(name))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        loaded = self.loader(name, weights)
        with self._lock:
            for stale in [k for k in self._items if k[:2] == key[:2]]:
                del self._items[stale]
            self._items[key] = loaded
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                evicted, _ = self._items.popitem(last=False)
                logger.info("model cache full (%d): evicted %s", self.capacity, evicted)
        return loaded

    def fetch(self, name: str, weights: str) -> zoo.LoadedModel:
        """:meth:`get`, an unknown or unavailable model and missing weights being a 4xx naming ``model``."""
        try:
            return self.get(name, weights)
        except zoo.WeightsNotFoundError as exc:
            raise RequestError(400, f"{exc}", "model") from None
        except SchemaError as exc:  # unknown, or a registered model that fails its check: the reason
            raise RequestError.from_schema(exc) from None

    def cached(self, name: str) -> zoo.LoadedModel | None:
        """Any loaded build of ``name`` (whatever its weights), without loading one."""
        return next((self.get(n, w) for n, w in self.keys() if n == name), None)

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return [k[:2] for k in self._items]

    def __len__(self) -> int:
        return len(self._items)


def device_from_context(context: Any) -> torch.device:
    """``cuda:{gpu_id}`` when TorchServe assigned a GPU and CUDA is usable, else the CPU."""
    props = getattr(context, "system_properties", None) or {}
    gpu_id = props.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def handler_config(context: Any) -> dict[str, Any]:
    """The ``handler:`` section of the archive's model-config YAML (empty if none)."""
    config = getattr(context, "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, Mapping) else None
    return dict(section) if isinstance(section, Mapping) else {}


def cache_capacity(config: Mapping[str, Any]) -> int:
    """The model-config's ``cache_size``, else ``$CONVLENS_MODEL_CACHE_SIZE``, else the default; at least 1."""
    size = config.get("cache_size", os.environ.get(CACHE_SIZE_ENV, DEFAULT_CACHE_SIZE))
    try:
        return max(1, int(size))
    except (TypeError, ValueError):
        logger.warning("cache_size %r is not an integer; using %d", size, DEFAULT_CACHE_SIZE)
        return DEFAULT_CACHE_SIZE


def random_weights_models() -> tuple[str, ...]:
    raw = os.environ.get(RANDOM_WEIGHTS_ENV, "").strip()
    if not raw:
        return DEFAULT_RANDOM_WEIGHTS_MODELS
    if raw == "all":
        return zoo.model_names()
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _allow_list() -> str:
    return f"allowed: {', '.join(random_weights_models()) or 'none'}; the operator sets {RANDOM_WEIGHTS_ENV}"


def check_random_weights(model: str, weights: str) -> None:
    """A request for random weights names a model on the allow-list, else a SchemaError naming ``weights``."""
    if weights == "random" and model not in random_weights_models():
        raise SchemaError("weights", f"random weights are not offered for {model} on this server ({_allow_list()})")


def check_buildable(name: str) -> str:
    """``name`` if this server may build it for a request (its weights are here, or it is on the random-weights
    allow-list), else a RequestError naming ``model``: the info API never builds what a request could not."""
    if name in random_weights_models() or zoo.find_weights(name) is not None:
        return name
    raise RequestError(400, f"{name}: its weights are not on this server and random weights are not offered for it "
                            f"({_allow_list()})", "model")


def load(name: str, weights: str, device: torch.device) -> zoo.LoadedModel:
    return zoo.load_model(name, weights=weights, device=device)  # type: ignore[arg-type]


def timed_loader(device: torch.device) -> Callable[[str, str], zoo.LoadedModel]:
    """A cache's loader: :func:`load` onto ``device``, logged with its time."""
    def load_logged(name: str, weights: str) -> zoo.LoadedModel:
        started = time.perf_counter()
        loaded = load(name, weights, device)
        logger.info("loaded %s (%s weights) on %s in %.0f ms", name, loaded.weights, device,
                    (time.perf_counter() - started) * 1e3)
        return loaded

    return load_logged
