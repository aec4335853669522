"""A fake API client for page tests: canned answers, every call recorded, failures on demand."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from client.http import (
    ApiError,
    ApiStatus,
    LayerCatalogue,
    LayerRow,
    ModelEntry,
    ModelFiles,
    ModelInfo,
    Progress,
    TechniqueInfo,
)
from convlens import registry
from convlens.outputs import Section
from convlens.schema import AttributionResponse, CorpusResponse, GridsResponse, SynthesisResponse, TopClass
from tests.dashboard import canned
from tests.dashboard.canned import CLASSES, b64png


def registered_card(name: str, source: str = "torchvision:resnet18", classes: Sequence[str] = ("ok", "scratch", "dent"),
                    input_size: int = 224) -> dict[str, Any]:
    """A model card as the server sends it (``convlens.zoo.ModelCard.to_json``)."""
    return {"name": name, "description": "", "source": source, "kind": source.partition(":")[0],
            "classes": list(classes), "input_size": input_size, "resize_size": input_size, "channels": 3,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "parameters": 11_178_051,
            "weights_file": "weights.safetensors", "weights_sha256": "ab" * 32, "layer_count": 67,
            "cam_layer": "layer4", "code_layer": "avgpool"}


def report_job(on_job: Any, job: str) -> None:
    """What the real client does while it polls a long job: two progress reports, the last one finished."""
    if on_job is not None:
        from client.http import JobStatus

        on_job(JobStatus(job, "running", 500, 1000))
        on_job(JobStatus(job, "done", 1000, 1000, status=200))


@dataclass
class FakeClient:
    fail: ApiError | None = None
    reachable: bool = True
    calls: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # technique → the last answer given
    # what prediction and attribution answers say of the input's likeness to the training data (none: not calibrated)
    familiarity: dict[str, float] = field(default_factory=dict)
    embedding_fitted: float | None = None  # the map fitted on a sample of this many images (None: on all of them)

    def answer(self, name: str, response: Any) -> Any:
        self.answers[name] = response
        return response

    def ping(self) -> ApiStatus:
        detail = "Healthy" if self.reachable else "unreachable: ConnectionError"
        return ApiStatus(self.reachable, self.reachable, detail)

    # The models directory: registered models (see ``registered_card``), and the operator's upload switch.
    registered: list[ModelInfo] = field(default_factory=list)
    upload_enabled: bool = True

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("builtin", "built-in CNN", "builtin", 10, 64),
                ModelInfo("alexnet", "AlexNet", "imagenet", 1000, 224),
                ModelInfo("vgg16", "VGG-16", "missing", 1000, 224, "fetch it with `convlens weights fetch vgg16`"),
                *self.registered]

    def models_list(self) -> ModelFiles:
        self.calls.append({"models_list": True})
        return ModelFiles([ModelEntry(m.name, m.status, m.reason, m.card, removable=m.name != "digits")
                           for m in self.registered], self.upload_enabled)

    def model_add(self, name: str, source: str, weights: bytes, classes: Sequence[str] | str, *,
                  weights_format: str = "safetensors", input_size: int | None = None, resize_size: int | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None, channels: int | None = None,
                  kwargs: Mapping[str, Any] | None = None, description: str = "", key: str | None = None,
                  strip_prefix: Sequence[str] = (), cam_layer: str | None = None,
                  code_layer: str | None = None) -> dict[str, Any]:
        names = classes.splitlines() if isinstance(classes, str) else list(classes)
        self.calls.append({"model_add": name, "source": source, "weights": weights, "classes": names,
                           "weights_format": weights_format, "input_size": input_size, "resize_size": resize_size,
                           "mean": mean, "std": std, "channels": channels, "kwargs": kwargs,
                           "description": description, "key": key, "strip_prefix": list(strip_prefix)})
        if self.fail is not None:
            raise self.fail
        if not self.upload_enabled:
            raise ApiError(400, "add is refused: the operator has turned model upload off on this server",
                           "params.action")
        card = registered_card(name, source, names, input_size or 224)
        self.registered.append(ModelInfo(name, description, "registered", len(names), card["input_size"],
                                         card=card))
        return card

    def model_remove(self, name: str) -> ModelFiles:
        self.calls.append({"model_remove": name})
        if self.fail is not None:
            raise self.fail
        self.registered = [m for m in self.registered if m.name != name]
        return self.models_list()

    def layers(self, model: str) -> LayerCatalogue:
        rows = [LayerRow("features.0", "Conv2d", (32, 32, 32), 7, 2, True, True),
                LayerRow("features.2", "ReLU", (32, 32, 32), 7, 2, True),
                LayerRow("features.14", "Conv2d", (128, 8, 8), 61, 8, True, True),
                LayerRow("features.16", "ReLU", (128, 8, 8), 61, 8, True),
                LayerRow("features", "Sequential", (128, 8, 8), 61, 8, True),
                LayerRow("pool", "AdaptiveAvgPool2d", (128, 1, 1), 89, 89, False)]
        return LayerCatalogue(model, 64, "features", rows, CLASSES, "features.0")

    def techniques(self) -> list[TechniqueInfo]:
        """The real registry, as the info API describes it."""
        return [TechniqueInfo.from_json(spec.describe()) for spec in registry.registry().values()]

    def synthesis(self, technique: TechniqueInfo | str, images: dict[str, bytes] | None = None,
                  model: str = "builtin", target: int | None = None, layer: str | None = None,
                  params: dict[str, Any] | None = None, job: str | None = None,
                  on_progress: Any = None) -> SynthesisResponse:
        name = technique.name if isinstance(technique, TechniqueInfo) else technique
        self.calls.append({"technique": name, "images": dict(images or {}), "model": model, "target": target,
                           "layer": layer, "params": dict(params or {}), "job": job})
        if self.fail is not None:
            raise self.fail
        if on_progress is not None:
            for step in (5, 10):
                on_progress(Progress(step, 10, base64.b64decode(b64png((10 * step, 0, 0)))))
        ratios = (params or {}).get("ratios", "1, 0.1")
        ratios = [float(r) for r in ratios.split(",")] if isinstance(ratios, str) else list(ratios)
        rows, columns = len(ratios), 3
        label = CLASSES[target or 0]
        out = canned.sections(
            name, labels={"target_label": label, "predicted_label": label, "result_label": label,
                          "rows": "content/style ratio: " + ", ".join(f"{r:g}" for r in ratios),
                          "columns": "scale: 0.5, 1, 2"},
            placeholders={"row": tuple(map(str, range(rows))), "col": tuple(map(str, range(columns))),
                          "k": tuple(k for k in ("2", "3", "4") if f"style_{k}" in (images or {}))},
            scalars={k: v for k, v in (("cells", float(rows * columns)),
                                       *((f"style_loss_{r}_{c}", 1.0 / (r + 1)) for r in range(rows)
                                         for c in range(columns))) if k in _scalar_keys(name, rows, columns)})
        return self.answer(name, SynthesisResponse(
            name, out["images"], out["scalars"], out["series"], out["labels"], 1.0, "builtin", model, layer, target,
            CLASSES[target] if target is not None else None))

    def cancel(self, job: str) -> None:
        self.calls.append({"cancel": job})

    def corpus(self, endpoint: str, model: str = "builtin", layer: str | None = None,
               params: dict[str, Any] | None = None, images: dict[str, Any] | None = None,
               on_job: Any = None) -> CorpusResponse:
        params = dict(params or {})
        name = str(params.get("method", endpoint))
        if registry.get(name).route != name:  # a technique of the dataset endpoint
            rest = {k: v for k, v in params.items() if k != "method"}
            return self.dataset(name, model, layer, rest, (images or {}).get("image"), on_job)
        self.calls.append({"endpoint": endpoint, "model": model, "layer": layer,
                           "params": {k: v for k, v in params.items() if k != "method"}, "method": name})
        report_job(on_job, "faith")
        if self.fail is not None:
            raise self.fail
        fractions = [0.0, 0.5, 1.0]
        series = {"deletion": [fractions, [0.9, 0.3, 0.1]], "insertion": [fractions, [0.1, 0.7, 0.9]],
                  "randomisation": [[0.0, 1.0, 2.0], [1.0, 0.4, 0.1]]}
        rows = [{"step": k, "layer": layer_name, "similarity": s}
                for k, (layer_name, s) in enumerate([("(none)", 1.0), ("classifier", 0.4), ("code.1", 0.1)])]
        batch = len((images or {}).get("images", []))
        out = canned.sections(name, series={k: v for k, v in series.items() if k in _declared(name, "series")},
                              rows=rows if "step" in _declared(name, "items") else [{} for _ in range(batch)])
        return self.answer(name, CorpusResponse(name, out["images"], out["scalars"], out["series"], out["items"], 1.0,
                                                "builtin", model, layer, [[0.0] * 4 for _ in range(batch)] or None))

    datasets_on_server: list[str] = field(default_factory=lambda: ["shapes"])

    def dataset(self, method: str, model: str = "builtin", layer: str | None = None,
                params: dict[str, Any] | None = None, image: bytes | None = None,
                on_job: Any = None) -> CorpusResponse:
        """The dataset endpoint: 6 images of 2 labels, whose map, neighbours and patches are canned."""
        params = dict(params or {})
        self.calls.append({"endpoint": "dataset", "method": method, "model": model, "layer": layer,
                           "params": params, "image": image, "on_job": on_job is not None})
        report_job(on_job, "ds")
        if self.fail is not None:
            raise self.fail
        labels = ["circle", "circle", "circle", "square", "square", "square"]
        items: list[dict[str, Any]] = []
        images: dict[str, str] = {}
        points = None
        if method == "datasets":
            if params.get("action") in ("builtin", "natural", "import"):
                self.datasets_on_server.append(str(params["name"]))
            if params.get("action") == "remove":
                self.datasets_on_server.remove(str(params["name"]))
            if params.get("action") == "sheet":  # tile k: grey level 40·k, as the hover test checks
                tile, count = int(params["size"]), int(params["count"])
                cols = min(count, 64)
                sheet = Image.new("RGB", (cols * tile, -(-count // cols) * tile), (255, 255, 255))
                for k in range(count):
                    sheet.paste((40 * k,) * 3, ((k % cols) * tile, (k // cols) * tile, (k % cols + 1) * tile,
                                                (k // cols + 1) * tile))
                buffer = io.BytesIO()
                sheet.save(buffer, format="PNG")
                images["sheet"] = base64.b64encode(buffer.getvalue()).decode()
            if params.get("action") == "images":
                for i in map(int, str(params["indices"]).split(",")):
                    images[f"i{i}"] = b64png((40 * i, 0, 0))
                    items.append({"index": i, "label": labels[i], "file": f"{labels[i]}/{i}.png"})
            else:
                items = [{"name": n, "images": 6, "classes": 2, "source": "builtin", "skipped": 0, "labels": "a,b",
                          "largest_class": 3, "fingerprint": f"fp-{n}"} for n in self.datasets_on_server]
        elif method == "embedding":  # compact: columns and the class names (what the page asks for)
            codes = [0, 0, 0, 1, 1, 1]
            columns = {"x": np.arange(6, dtype="<f4"), "y": np.arange(6, dtype="<f4") % 3,
                       "label": np.array(codes, dtype="<u2"), "predicted": np.zeros(6, dtype="<u2"),
                       "correct": np.array([1, 1, 1, 0, 0, 0], dtype="u1"),
                       "confidence": np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], dtype="<f4")}
            if params.get("channel") is not None:
                columns["activation"] = np.arange(6, dtype="<f4") * (1 + int(params["channel"]))
            items = [{"column": "label", "code": 0, "name": "circle"}, {"column": "label", "code": 1, "name": "square"},
                     {"column": "predicted", "code": 0, "name": "circle"}]
            items += [{"index": int(i), "file": f"{labels[int(i)]}/{i}.png"}
                      for i in str(params.get("files") or "").split(",") if i]
            if params.get("grid"):
                images["grid"] = b64png((0, 0, 200))
            encoded = {} if params.get("files") else {k: base64.b64encode(v.tobytes()).decode()
                                                      for k, v in columns.items()}  # files: a lookup
            fitted = {} if self.embedding_fitted is None else {"fitted": self.embedding_fitted}
            out = canned.sections(method, images=images, rows=items, columns=encoded, scalars=fitted)
            return self.answer(method, CorpusResponse(method, out["images"], out["scalars"], out["series"],
                                                      out["items"], 1.0, "builtin", model, layer or "code", None,
                                                      None, out["columns"]))
        elif method == "neighbours":
            images = {"query": b64png((9, 9, 9)), "code": b64png((1, 1, 1)), "pixel": b64png((2, 2, 2))}
            items = [{"space": space, "rank": r, "index": r, "distance": 0.5 * r, "label": labels[r], "file": "x.png"}
                     for space in ("code", "pixel") for r in range(3)]
            scalars_nb = {"code_same_label": 1.0, "pixel_same_label": 0.0} if "query" in params else {}
            out = canned.sections(method, images=images, scalars=scalars_nb, rows=items)
            return self.answer(method, CorpusResponse(method, out["images"], out["scalars"], {}, out["items"], 1.0,
                                                      "builtin", model, layer or "code"))
        elif method == "top_patches":
            images = {"grid": b64png((0, 200, 0))}
            items = [{"rank": r, "channel": params.get("channel") or 0, "index": r, "activation": 3.0 - r,
                      "label": labels[r], "file": "x.png"} for r in range(3)]
        out = canned.sections(method, images=images, rows=items)
        return self.answer(method, CorpusResponse(method, out["images"], out["scalars"], out["series"], out["items"],
                                                  1.0, "builtin", model, layer or "code", None, points))

    def grids(self, endpoint: str, image: bytes | None = None, model: str = "builtin", layer: str | None = None,
              params: dict[str, Any] | None = None, weights: str | None = None) -> GridsResponse:
        params = dict(params or {})
        name = str(params.pop("method", endpoint))
        self.calls.append({"endpoint": endpoint, "model": model, "layer": layer, "params": params, "image": image,
                           "method": name})
        if self.fail is not None:
            raise self.fail
        # 2 x 3 tiles of 24 px with 2 px gaps: each tile a flat grey level, so a crop can be checked.
        grid = Image.new("RGB", (3 * 24 + 4, 2 * 24 + 2), (255, 255, 255))
        rows = []
        fields = _declared(name, "items")
        for k in range(6):
            row, col = divmod(k, 3)
            grid.paste((40 * k, 40 * k, 40 * k), (col * 26, row * 26, col * 26 + 24, row * 26 + 24))
            item = {"channel": 5 - k, "mean": 0.1 * (6 - k), "min": 0.0, "max": 1.0 + k, "dead": int(k == 5),
                    "filter": k, "norm": 1.0, "grid": "grid", "row": row, "col": col}
            rows.append({f: v for f, v in item.items() if f in fields})
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG")
        images = {"grid": base64.b64encode(buffer.getvalue()).decode()}
        if image is not None:
            images["input"] = b64png((200, 30, 30))
        out = canned.sections(name, images=images, rows=rows)
        return self.answer(name, GridsResponse(name, out["images"], out["items"], out["scalars"], 1.0, "builtin",
                                               model, layer or "features.0", out["labels"]))

    def explain(self, endpoint: str, image: bytes, model: str = "builtin", target: int | None = None,
                layer: str | None = None, params: dict[str, Any] | None = None) -> AttributionResponse:
        params = dict(params or {})
        name = str(params.pop("method", endpoint))
        self.calls.append({"endpoint": endpoint, "model": model, "target": target, "layer": layer,
                           "params": params, "image": image, "method": name})
        if self.fail is not None:
            raise self.fail
        t = 3 if target is None else target
        out = canned.sections(name, scalars=dict(self.familiarity))
        topk = [TopClass(i, CLASSES[i], p) for i, p in ((3, 0.9), (1, 0.05), (0, 0.03), (2, 0.01), (4, 0.01))]
        return self.answer(name, AttributionResponse(images=out["images"], target=t, target_label=CLASSES[t],
                                                     topk=topk, scalars=out["scalars"], elapsed_ms=1.0,
                                                     weights="builtin", model=model, layer=layer,
                                                     labels=out["labels"]))


def _declared(name: str, section: Section) -> set[str]:
    return {d.name for d in registry.get(name).declared.of(section)}


def _scalar_keys(name: str, rows: int, columns: int) -> set[str]:
    """The scalar keys ``name`` declares, patterns expanded for a grid of ``rows`` x ``columns``."""
    return {key for d in registry.get(name).declared.of("scalars")
            for key in canned.expand(d, {"row": tuple(map(str, range(rows))), "col": tuple(map(str, range(columns)))})}


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def run_page(path: str, client: FakeClient, **state: object) -> AppTest:
    """Run one page file on its own with ``client`` as the session's API client."""
    at = AppTest.from_file(path, default_timeout=30)
    at.session_state["client"] = client
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def run_family(family: str, technique: str, client: FakeClient, **state: object) -> AppTest:
    """Run ``family``'s generic page for one ``technique`` (as the sidebar lists it) with ``client``."""
    script = f"from dashboard import family_view\nfamily_view.page({family!r}, ({technique!r},))\n"
    at = AppTest.from_string(script, default_timeout=30)
    at.session_state["client"] = client
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()
