"""Every registered technique honours its family's contract, whatever the model looks like.

Parametrised over :func:`convlens.registry.registry`: a new technique is checked the moment it is
declared. Attribution: (N, H, W) maps in [0, 1], the target it was given, batch independence.
Activations: grids of tiles in [0, 1]. All: no hooks left, weights, gradients, modes and the
caller's tensors untouched, and the same through the pipeline on a model wrapped as a zoo model.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from convlens import registry
from convlens.hooks import count_hooks
from convlens.models import LoadedModel, Preprocessing
from convlens.pipeline import run
from convlens.results import Attribution, Grids
from convlens.techniques.attribution.gradcam import cam_layer
from tests import numerics
from tests.conftest import TinyCNN

ATTRIBUTION = [s.name for s in registry.of_family("attribution")]
ACTIVATIONS = [s.name for s in registry.of_family("activations")]
LAYER_FOR_NEED = {"spatial": "features.1", "conv": "features.3", "optional": None, "none": None}


def untouched(model: TinyCNN, state: dict[str, torch.Tensor], frozen: bool) -> None:
    assert count_hooks(model) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad == (not frozen) for p in model.parameters())
    assert not model.training


def test_every_technique_is_declared_completely() -> None:
    specs = registry.registry()
    assert {"vanilla", "guided", "gradcam", "occlusion", "activations", "filters"} <= set(specs)
    for spec in specs.values():
        assert spec.family in registry.FAMILIES and spec.title and spec.reference
        assert spec.params.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert (spec.layer == "none") == ("layer" not in {f["name"] for f in registry.describe_params(spec.params)})
        assert spec.default_layer == "none" or spec.layer != "none"
    assert registry.all_endpoints()[0] == "classify" and len(set(registry.all_endpoints())) == len(
        registry.all_endpoints())
    assert [s.name for s in registry.endpoints()["saliency"]] == ["vanilla", "guided", "gradcam"]
    assert registry.default_technique("saliency").name == "gradcam"


@pytest.mark.parametrize("name", ATTRIBUTION)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
def test_attribution_contract(name: str, inplace: bool, frozen: bool, tiny_input: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = TinyCNN(inplace=inplace).eval().requires_grad_(not frozen)
    spec = registry.get(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = tiny_input.clone()
    with torch.no_grad():  # callers may hold grad mode off; the technique turns it on for itself only
        result = spec.run(model, x, None, spec.params())
        assert not torch.is_grad_enabled()
    n, _, h, w = x.shape
    assert result.map.shape == (n, h, w) and torch.isfinite(result.map).all()
    assert float(result.map.min()) >= 0.0 and float(result.map.max()) <= 1.0
    assert torch.allclose(result.map.flatten(1).amax(1), torch.ones(n)) or float(result.map.max()) == 0.0
    assert not result.map.requires_grad
    assert result.target.shape == (n,) and result.logits.shape == (n, 5)
    assert result.target.tolist() == model(x).argmax(1).tolist()
    for signed in result.signed.values():
        assert signed.shape[0] == n and signed.shape[-2:] == (h, w)
    untouched(model, state, frozen)
    assert torch.equal(x, tiny_input) and x.grad is None


@pytest.mark.parametrize("name", ATTRIBUTION)
def test_attribution_explains_the_target_it_is_given(name: str, tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    spec = registry.get(name)
    a = spec.run(tiny_cnn, tiny_input, torch.tensor([0, 3]), spec.params())
    assert a.target.tolist() == [0, 3]
    torch.testing.assert_close(a.logits, tiny_cnn(tiny_input).detach())


def independence_tolerance(name: str, model: TinyCNN, x: torch.Tensor, alone: Attribution) -> float:
    """How far two float32 computations of one image's normalised map may drift apart through rounding.

    Gradient maps: every gradient term is within the a-priori rounding bound of the absolute network
    (:mod:`tests.numerics`), so batched and alone each lie within δ of exact; dividing by the peak p adds as
    much again: |Δmap| ≤ 4δ/p. Occlusion: the map divides differences of probabilities (drops of 1e-3 here)
    by its peak drop, so rounding is magnified by 1 / peak; a worst-case bound would say nothing, so the
    logits' rounding under another batch composition is measured on this CPU and carried through the
    softmax, the drop and the scaling (:func:`tests.numerics.probability_drop_error`)."""
    peak = float(alone.raw.abs().max())
    if name == "occlusion":
        return numerics.unit_scaled_error(numerics.probability_drop_error(numerics.batch_rounding(model, x)), peak)
    if name == "gradcam":
        delta = float(numerics.cam_error(model, x, cam_layer(model, x.shape[-1])).max())
    else:
        delta = float(numerics.input_gradient_error(model, x).max())
    return 4 * delta / peak


@pytest.mark.parametrize("name", ATTRIBUTION)
def test_attribution_batch_items_are_independent(name: str, tiny_cnn: TinyCNN, tiny_input: torch.Tensor) -> None:
    """An image's map is the same whether it came alone or with others, up to float32 rounding.

    A batch of two runs other kernels than a batch of one (and other CPUs other kernels again), so the two
    maps are compared within the rounding tolerance derived from this model, input and float32's epsilon
    (:func:`independence_tolerance`), never within a fixed number. That tolerance stays far below what a
    real coupling between images changes (normalising over the batch, a target taken from the wrong row:
    differences of order 0.1–1), which the last assertion keeps true."""
    spec = registry.get(name)
    both = spec.run(tiny_cnn, tiny_input, torch.tensor([1, 2]), spec.params())
    alone = spec.run(tiny_cnn, tiny_input[1:], torch.tensor([2]), spec.params())
    tolerance = independence_tolerance(name, tiny_cnn, tiny_input[1:], alone)
    torch.testing.assert_close(both.map[1:], alone.map, atol=tolerance, rtol=0)
    assert tolerance < 0.05


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("frozen", [False, True])
def test_activations_contract(name: str, frozen: bool, tiny_input: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = TinyCNN(inplace=True).eval().requires_grad_(not frozen)
    spec = registry.get(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = tiny_input[:1].clone() if spec.inputs else None
    params = spec.params(layer=LAYER_FOR_NEED[spec.layer])
    result = spec.run(model, x, params)
    assert isinstance(result, Grids) and result.grids
    for grid in result.grids.values():
        assert grid.tiles.ndim == 4 and grid.tiles.shape[1] in (1, 3) and len(grid.items) == len(grid.tiles)
        assert float(grid.tiles.min()) >= 0.0 and float(grid.tiles.max()) <= 1.0 and not grid.tiles.requires_grad
        assert 1 <= grid.columns <= len(grid.tiles)
    untouched(model, state, frozen)
    if x is not None:
        assert torch.equal(x, tiny_input[:1])


def tiny_loaded() -> LoadedModel:
    torch.manual_seed(0)
    net = TinyCNN().eval().requires_grad_(False)
    return LoadedModel("tiny", net, tuple("abcde"), Preprocessing(16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                       "random")


QUICK = {"steps": 2, "size": 32, "source_size": 24, "octaves": 2, "count": 2, "layers": 2, "ratios": [1.0, 0.1],
         "scales": [1.0], "window": 5}


def quick_params(spec: registry.Spec) -> dict[str, object]:
    """The smallest settings of a long technique (its demo defaults run for seconds to minutes)."""
    fields = {f.name for f in dataclasses.fields(spec.params)}
    return {k: v for k, v in QUICK.items() if k in fields}


@pytest.mark.parametrize("name", [s.name for s in registry.registry().values() if s.family != "corpus"])
def test_every_technique_runs_through_the_pipeline_with_its_default_layer(name: str) -> None:
    loaded = tiny_loaded()
    spec = registry.get(name)
    images = [{k: Image.new("RGB", (20, 16), (30 * i, 90, 200)) for k in spec.inputs} for i in range(2)]
    outputs = run(loaded, name, images, targets=[1, 2], params=quick_params(spec))
    assert len(outputs) == 2
    for out in outputs:
        assert out.technique == name and out.family == spec.family and out.weights == "random"
        assert out.images or not spec.declared.of("images")  # a prediction answers numbers only
        assert all(0 <= float(t.min()) and float(t.max()) <= 1 for t in out.images.values())
        assert (out.layer is None) == (spec.default_layer == "none")
    assert count_hooks(loaded.net) == 0


def test_no_technique_is_named_outside_its_module() -> None:
    """Adding a technique is one file: nothing else in the product branches on a technique's name."""
    root = Path(__file__).resolve().parents[2]
    names = set(registry.registry())
    offenders = []
    for folder in ("convlens", "handlers", "dashboard", "client", "serve"):
        for path in (root / folder).rglob("*.py"):
            if "techniques" in path.parts or "training" in path.parts:  # a technique's own code, or its training
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in names
                                                         for c in [node.left, *node.comparators]):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, f"comparisons with a technique name: {offenders}"


@pytest.mark.parametrize("name", [s.name for s in registry.of_family("corpus") if not s.inputs and not {
    "dataset", "name"} & {p["name"] for p in registry.describe_params(s.params)}])
def test_corpus_techniques_run_through_the_pipeline(name: str) -> None:
    """Corpus techniques that measure the built-in dataset: on the built-in model, a few images (the techniques
    over a named dataset or a batch of images have their contract in ``test_corpus.py``)."""
    from convlens.models import load_model
    from convlens.schema import SchemaError

    loaded = load_model("builtin")
    state = {k: v.clone() for k, v in loaded.net.state_dict().items()}
    [out] = run(loaded, name, [{}], params={"n": 4, "randomisation_images": 2})
    assert out.family == "corpus" and out.series and all(len(xs) == len(ys) for xs, ys in out.series.values())
    assert all(torch.equal(state[k], v) for k, v in loaded.net.state_dict().items())
    assert count_hooks(loaded.net) == 0
    with pytest.raises(SchemaError) as info:
        run(tiny_loaded(), name, [{}])
    assert info.value.field == "model"
