"""``/predictions/saliency``: vanilla gradient, guided backprop or Grad-CAM of an image.

Request: ``{"image": base64, "model": "builtin", "target": int|null, "layer": str|null,
"params": {"method": "vanilla"|"guided"|"gradcam", "alpha": 0.5, "colormap": "inferno", "topk": 5, ...}}``
(or the same fields as a multipart form; there ``method`` may also be a field of its own).
Response images: ``input`` (what the model saw), ``map``, ``overlay``, and ``gradient`` for guided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convlens.explain import TECHNIQUES, explain_batch
from convlens.models import LoadedModel
from convlens.schema import AttributionResponse, TopClass, choice, form_text
from handlers.base import ConvLensHandler, Job, encode_b64_png

DEFAULT_METHOD = "gradcam"


class SaliencyHandler(ConvLensHandler):
    endpoint = "saliency"
    warmup_params = tuple({"method": method} for method in TECHNIQUES)

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        method = job.params.pop("method", None)
        if method is None:
            method = form_text(fields.get("method"))
        job.method = choice("params.method", method, tuple(TECHNIQUES), DEFAULT_METHOD)

    def run_group(self, loaded: LoadedModel, jobs: list[Job]) -> list[dict[str, Any]]:
        first = jobs[0]
        explanations = explain_batch(loaded, [job.image for job in jobs], first.method or DEFAULT_METHOD,
                                     [job.request.target for job in jobs], first.request.layer, first.params)
        return [AttributionResponse(
            images={name: encode_b64_png(image) for name, image in e.images.items()},
            target=e.target,
            target_label=e.target_label,
            topk=[TopClass(index, label, p) for index, label, p in e.topk],
            scalars=dict(e.scalars),
            elapsed_ms=0.0,
            weights=e.weights,
            model=e.model,
            layer=e.layer,
        ).to_json() for e in explanations]
