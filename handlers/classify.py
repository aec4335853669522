"""``/predictions/classify``: the top-k classes of an image (and the info API, see ``handlers/base.py``).

Request: ``{"image": base64, "model": "builtin", "target": int|label|null, "params": {"topk": 5}}``
(or the same fields as a multipart form). ``target`` set: its probability is reported
in ``scalars`` and it becomes the response's ``target``; otherwise the top-1 class is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from convlens.models import LoadedModel
from convlens.pipeline import topk_classes
from convlens.schema import MAX_TOP_K, AttributionResponse, SchemaError, TopClass, as_int
from handlers.base import ConvLensHandler, Job

ALLOWED_PARAMS = ("topk",)


class ClassifyHandler(ConvLensHandler):
    endpoint = "classify"
    warmup_params = ({},)

    def technique_for(self, fields: Mapping[str, Any]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return "classify", ("image",), ()

    def prepare_job(self, job: Job, fields: Mapping[str, Any]) -> None:
        if job.request.layer is not None:
            raise SchemaError("layer", "classify does not use a layer")
        job.params = dict(job.request.params)  # the base sets params.method aside; classify takes none
        for key in job.params:
            if key not in ALLOWED_PARAMS:
                raise SchemaError(f"params.{key}", f"unknown parameter; allowed: {', '.join(ALLOWED_PARAMS)}")
        job.params = {"topk": as_int("params.topk", job.params.get("topk", 5), 1, MAX_TOP_K)}

    def run_group(self, loaded: LoadedModel, jobs: list[Job]) -> list[dict[str, Any]]:
        x = torch.cat([loaded.prepare(job.inputs["image"])[1] for job in jobs])
        with torch.no_grad():
            logits = loaded.net(x).float()
        probs = torch.softmax(logits, dim=1)
        out = []
        for i, job in enumerate(jobs):
            target = job.request.target if job.request.target is not None else int(logits[i].argmax())
            top = topk_classes(logits[i], loaded.classes, job.params["topk"])
            out.append(AttributionResponse(
                images={},
                target=target,
                target_label=loaded.label(target),
                topk=[TopClass(index, label, p) for index, label, p in top],
                scalars={"probability": float(probs[i, target]), "logit": float(logits[i, target])},
                elapsed_ms=0.0,
                weights=loaded.weights,
                model=loaded.name,
                layer=None,
            ).to_json())
        return out
