"""The prediction family: classify is an ordinary registered technique, run by the pipeline's PredictionRunner;
the target range and the ``topk`` bounds are each checked in one place, for every family."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from convlens import pipeline, registry
from convlens.schema import MAX_TOP_K, SchemaError
from tests.core.test_contract import quick_params, tiny_loaded

CLASSIFY = registry.of_family("prediction")[0].name


def images(n: int) -> list[dict[str, Image.Image]]:
    return [{"image": Image.new("RGB", (20, 16), (40 * i, 90, 200))} for i in range(n)]


def test_classify_is_registered_and_its_endpoint_answers_the_info_api() -> None:
    spec = registry.get(CLASSIFY)
    assert spec.family == "prediction" and spec.route == registry.info_endpoint() == registry.all_endpoints()[0]
    familiarity = [d.name for d in registry.FAMILIARITY]  # the family's: does the input look like training data?
    assert [d.name for d in spec.declared.of("scalars")] == [*familiarity, "probability", "logit"]


def test_a_batch_runs_the_net_once_without_gradients_and_answers_like_softmax() -> None:
    loaded = tiny_loaded()
    calls: list[tuple[int, bool]] = []
    handle = loaded.net.register_forward_hook(lambda m, i, o: calls.append((i[0].shape[0], torch.is_grad_enabled())))
    try:
        outs = pipeline.run(loaded, CLASSIFY, images(3), [None, 4, None], None, {"topk": 2})
    finally:
        handle.remove()
    assert calls == [(3, False)]
    x = torch.cat([loaded.prepare(one["image"])[1] for one in images(3)])
    logits = loaded.net(x).float()
    probs = torch.softmax(logits, dim=1)
    for i, out in enumerate(outs):
        target = 4 if i == 1 else int(logits[i].argmax())
        assert out.target == target and out.target_label == loaded.classes[target] and out.images == {}
        assert out.scalars == pytest.approx({"probability": float(probs[i, target]), "logit": float(logits[i, target])})
        assert [t[0] for t in out.topk] == probs[i].topk(2).indices.tolist()


@pytest.mark.parametrize("name", [s.name for s in registry.registry().values()
                                  if s.family in ("prediction", "attribution", "synthesis") and "image" in s.inputs])
def test_a_target_the_model_lacks_is_refused_naming_target_in_every_family(name: str) -> None:
    loaded = tiny_loaded()
    spec = registry.get(name)
    inputs = [{k: Image.new("RGB", (20, 16), (30, 90, 200)) for k in spec.inputs}]
    for target in (len(loaded.classes), -1):
        with pytest.raises(SchemaError) as exc:
            pipeline.run(loaded, name, inputs, [target], None, quick_params(spec))
        assert exc.value.field == "target" and f"[0, {len(loaded.classes) - 1}]" in exc.value.message


def test_topk_has_one_declared_bound_for_classify_and_the_drawing_options() -> None:
    rows = [next(r for r in registry.describe_params(cls) if r["name"] == "topk")
            for cls in (registry.get(CLASSIFY).params, pipeline.DisplayOptions)]
    assert [(r["min"], r["max"], r["default"]) for r in rows] == [(1, MAX_TOP_K, 5)] * 2
    loaded = tiny_loaded()
    attribution = registry.of_family("attribution")[0].name
    for name in (CLASSIFY, attribution):
        for bad in (0, MAX_TOP_K + 1):
            with pytest.raises(SchemaError) as exc:
                pipeline.run(loaded, name, images(1), [None], None, {"topk": bad})
            assert exc.value.field == "params.topk" and f"[1, {MAX_TOP_K}]" in exc.value.message
