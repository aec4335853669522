"""The synthesis family: the render loop, its objectives, and each technique on a tiny model with a property
that can fail (the objective rises, the class flips, the reconstruction error falls, the Gram distance falls)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlens import registry
from convlens.hooks import count_hooks
from convlens.models import LoadedModel, Preprocessing, load_model
from convlens.pipeline import run
from convlens.results import Cancelled
from convlens.schema import SchemaError, parse_request
from convlens.techniques.synthesis import objectives as obj
from convlens.techniques.synthesis.loop import SignedMomentum, forward, optimize
from convlens.techniques.synthesis.param import FourierImage, PixelImage
from convlens.techniques.synthesis.perceptual import perceptual
from convlens.techniques.synthesis.style import preserve_color
from tests.conftest import TinyCNN


def tiny() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel("tiny", TinyCNN().eval().requires_grad_(False), tuple("abcde"),
                       Preprocessing(16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), "random")


def spec_run(name: str, loaded: LoadedModel, inputs: dict[str, torch.Tensor], target: int | None = None,
             progress=None, **params: object):  # type: ignore[no-untyped-def]
    spec = registry.get(name)
    return spec.run(loaded, inputs, target, spec.params(**params), progress=progress)


# ------------------------------------------------------------------------------------ objectives


def test_gram_and_total_variation_match_hand_computed_values() -> None:
    f = torch.tensor([[[[1.0, 2.0]], [[0.0, 3.0]]]])  # (1, 2, 1, 2): two channels, two positions
    expected = torch.tensor([[[1 + 4, 0 + 6], [0 + 6, 0 + 9]]]) / 2
    assert torch.allclose(obj.gram(f), expected)
    img = torch.zeros(1, 3, 2, 2)
    img[..., 0, 1] = 1.0  # one bright pixel at the top right
    ctx = obj.Context(img, {}, None)
    loss, _ = obj.total_variation(power=2.0)(ctx)
    # only the top-left difference pair exists in a 2x2 image: (Δx)² = 1 per channel, Δy = 0 → mean over 3 values
    assert loss.item() == pytest.approx(1.0, rel=1e-4)


def test_objectives_compose_with_weights_and_report_each_term_as_read() -> None:
    logits = torch.tensor([[1.0, 5.0]])
    ctx = obj.Context(torch.full((1, 3, 2, 2), 0.75), {}, logits)
    total, values = (obj.class_score(1) + 2.0 * obj.l2_decay())(ctx)
    assert values == {"class_score": pytest.approx(5.0), "l2_decay": pytest.approx(0.0625)}
    assert total.item() == pytest.approx(-5.0 + 2 * 0.0625)


def test_the_margin_is_the_largest_other_logit_minus_the_target_logit() -> None:
    ctx = obj.Context(torch.zeros(2, 3, 2, 2), {}, torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]]))
    loss, values = obj.class_margin(torch.tensor([0, 1]))(ctx)
    assert loss.tolist() == pytest.approx([3.0 - 1.0, 2.0 - 3.0])  # negative once the model says the target
    assert values == {"margin": pytest.approx(0.5)}


def test_signed_momentum_keeps_the_direction_and_follows_the_cosine_schedule() -> None:
    def two_steps(momentum: float, cosine: bool) -> list[float]:
        p = nn.Parameter(torch.zeros(2))
        opt = SignedMomentum([p], lr=1.0, momentum=momentum, steps=2, cosine=cosine)
        for grad in ([1.0, 1.0], [-0.1, 1.9]):  # second gradient: mean |g| = 1, so v = 0.9·[1, 1] + [-0.1, 1.9]
            p.grad = torch.tensor(grad)
            opt.step()
        return p.detach().tolist()

    # step sizes lr·(½(1 + cos(πk/2)) + 0.05) = 1.05, 0.55; momentum keeps the first coordinate going down
    assert two_steps(0.9, True) == pytest.approx([-1.6, -1.6])
    assert two_steps(0.0, True) == pytest.approx([-1.05 + 0.55, -1.6])  # plain signed steps turn back
    assert two_steps(0.0, False) == pytest.approx([0.0, -2.0])


# ------------------------------------------------------------------------------------ the loop


class Linear(nn.Module):
    """Logits = w · x: the class-score gradient is w, so ascent must brighten where w > 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, 3 * 4 * 4), requires_grad=False)
        self.w.data[1, :24] = 1.0
        self.w.data[1, 24:] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T


def test_the_loop_ascends_a_linear_score_within_the_box_and_records_the_history() -> None:
    param = PixelImage(torch.full((1, 3, 4, 4), 0.5))
    result = optimize(Linear(), param, obj.class_score(1), steps=40, lr=0.05)
    flat = result.image.flatten()
    assert torch.all(flat[:24] > 0.95) and torch.all(flat[24:] < 0.05)  # pushed to the box's corners
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0
    scores = result.history["class_score"]
    assert len(scores) == 40 and scores[-1] > scores[0] and result.final["class_score"] == scores[-1]


def test_the_loop_is_deterministic_for_a_seed_and_cancellable_with_hooks_restored() -> None:
    loaded = tiny()
    runs = [spec_run("classviz", loaded, {}, 2, steps=6, jitter=2, seed=s) for s in (3, 3, 4)]
    assert torch.equal(runs[0].images["result"], runs[1].images["result"])
    assert not torch.equal(runs[0].images["result"], runs[2].images["result"])

    seen: list[int] = []

    def stop_at_three(step: int, total: int, preview: torch.Tensor | None) -> None:
        seen.append(step)
        assert preview is None or preview.shape == (3, 16, 16)
        if step == 3:
            raise Cancelled

    result = spec_run("neuron", loaded, {}, None, stop_at_three, layer="features.3", steps=50)
    assert seen == [1, 2, 3]
    assert result.scalars["cancelled"] == 1.0 and result.scalars["steps"] == 3.0
    assert count_hooks(loaded.net) == 0


def test_an_objective_on_an_early_layer_does_not_run_the_rest_of_the_network() -> None:
    loaded = tiny()
    calls = []
    handle = loaded.net.classifier.register_forward_hook(lambda *_: calls.append(1))
    try:
        acts, logits = forward(loaded.net, torch.rand(1, 3, 16, 16), obj.channel("features.1", 0))
        assert "features.1" in acts and logits is None and not calls
        acts, logits = forward(loaded.net, torch.rand(1, 3, 16, 16), obj.class_score(0))
        assert logits is not None and calls == [1]
    finally:
        handle.remove()
    assert count_hooks(loaded.net) == 1 - 1


def test_fourier_parameterisation_damps_high_frequencies() -> None:
    param = FourierImage(1, (32, 32), torch.Generator().manual_seed(0), torch.device("cpu"), init_std=0.5)
    image = param.image()[0].mean(0) - 0.5
    spectrum = torch.fft.rfft2(image).abs()
    low, high = spectrum[1:4, 1:4].mean(), spectrum[12:16, 12:16].mean()
    assert 0 < float(image.abs().max()) and float(low) > 3 * float(high)


# ------------------------------------------------------------------------------------ techniques on a tiny model


def test_class_visualisation_raises_the_score_and_the_model_then_says_the_class() -> None:
    loaded = tiny()
    for target in (0, 2):  # classes this random tiny net can be driven to (3 and 4 never win on it)
        result = spec_run("classviz", loaded, {}, target, steps=60, lr=0.1, jitter=1, decay=0.0, blur_every=0,
                          clip_norm=0.0, clip_contribution=0.0)
        history = result.history["class_score"]
        assert history[-1] > history[0] + 0.25
        assert result.scalars["predicted_class"] == target


def test_yosinski_regularisers_are_each_switchable() -> None:
    loaded = tiny()
    plain = spec_run("classviz", loaded, {}, 1, steps=20, decay=0.0, blur_every=0, clip_norm=0.0,
                     clip_contribution=0.0).images["result"]
    decayed = spec_run("classviz", loaded, {}, 1, steps=20, decay=0.3, blur_every=0, clip_norm=0.0,
                       clip_contribution=0.0).images["result"]
    clipped = spec_run("classviz", loaded, {}, 1, steps=20, decay=0.0, blur_every=0, clip_norm=50.0,
                       clip_contribution=0.0).images["result"]
    assert (decayed - 0.5).abs().mean() < 0.7 * (plain - 0.5).abs().mean()
    grey = ((clipped - 0.5).abs().amax(0) < 1e-6).float().mean()
    assert grey >= 0.45  # about half the pixels (the 50th percentile of the norm) are set to grey
    with pytest.raises(SchemaError) as info:
        spec_run("classviz", loaded, {}, 1, steps=2, parameterisation="fourier")
    assert info.value.field == "params.parameterisation"


def test_neuron_and_gallery_raise_their_channels() -> None:
    loaded = tiny()
    one = spec_run("neuron", loaded, {}, None, layer="features.3", channel=2, steps=40, parameterisation="pixels")
    assert one.history["channel"][-1] > one.history["channel"][0]
    gallery = spec_run("neuron_gallery", loaded, {}, None, layer="features.3", count=6, steps=30)
    tiles = torch.stack([gallery.images[f"channel_{c}"] for c in range(6)])
    with torch.no_grad():
        acts = loaded.net.features[:4](loaded.preprocessing.normalize(tiles)).mean(dim=(2, 3))  # (image, channel)
    own = acts.diagonal()
    others = (acts.sum(0) - own) / 5  # the same channel on the other images
    assert int((own > others).sum()) >= 5  # each image is about its own channel
    with pytest.raises(SchemaError) as info:
        spec_run("neuron", loaded, {}, None, layer="features.3", channel=6)
    assert info.value.field == "params.channel"


@pytest.mark.parametrize("attack", [{}, {"loss": "cross_entropy", "momentum": 0.0, "schedule": "constant"}])
def test_fooling_flips_the_class_within_the_budget(attack: dict[str, object]) -> None:
    loaded = tiny()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = int(loaded.net(loaded.preprocessing.normalize(image[None])).argmax())
    target = (before + 1) % 5
    result = spec_run("fooling", loaded, {"image": image}, target, epsilon=32.0, steps=200, lr=2.0, **attack)
    assert result.scalars["fooled"] == 1.0 and result.scalars["result_class"] == target
    assert result.scalars["original_class"] == before
    change = result.images["result"] - result.images["original"]
    assert float(change.abs().max()) <= 32 / 255 + 1e-5
    assert result.scalars["linf_255"] == pytest.approx(float(change.abs().max()) * 255, abs=1e-3)


def linear_two_class(min_linf_255: float) -> tuple[LoadedModel, torch.Tensor]:
    """A linear model and a grey image it calls class 0 by a margin that an L∞ change of exactly
    ``min_linf_255``/255 along −sign(w) cancels: no smaller change can make it say class 1."""
    w = torch.randn(3 * 16 * 16, generator=torch.Generator().manual_seed(5)) * 0.01
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.zeros_like(w), w]))
        x = torch.full((3, 16, 16), 0.5)
        net[1].bias.copy_(torch.tensor([float(w @ x.flatten()) + min_linf_255 / 255 * float(w.abs().sum()), 0.0]))
    loaded = LoadedModel("linear", net.eval().requires_grad_(False), ("a", "b"),
                         Preprocessing(16, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "random")
    return loaded, x


def test_minimising_finds_a_change_near_the_hand_computed_smallest() -> None:
    loaded, x = linear_two_class(2.7)
    plain = spec_run("fooling", loaded, {"image": x}, 1, epsilon=8.0, steps=100, minimise=False)
    small = spec_run("fooling", loaded, {"image": x}, 1, epsilon=8.0, steps=100)
    assert plain.scalars["fooled"] == small.scalars["fooled"] == 1.0
    assert plain.scalars["linf_255"] == pytest.approx(4.2, abs=1e-3)  # the first signed step: 1.05 × lr = 4/255
    # the search ends within a quarter of a grey level above the true minimum, never below it
    assert 2.7 - 1e-3 <= small.scalars["linf_255"] <= 2.7 + 0.25 + 1e-3
    assert small.scalars["steps_to_fool"] == plain.scalars["steps"] and small.scalars["steps"] <= 100
    assert small.scalars["minimising_rounds"] >= 1


def test_minimising_never_spends_more_than_the_step_budget_or_loses_the_fool() -> None:
    loaded = tiny()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    for steps in (12, 40):
        result = spec_run("fooling", loaded, {"image": image}, 2, epsilon=32.0, steps=steps, lr=2.0)
        assert result.scalars["steps"] <= steps
        if result.scalars["fooled"]:
            plain = spec_run("fooling", loaded, {"image": image}, 2, epsilon=32.0, steps=steps, lr=2.0,
                             minimise=False)
            assert result.scalars["linf_255"] <= plain.scalars["linf_255"] + 1e-4
    assert result.scalars["fooled"] == 1.0  # 40 steps are enough on this model


def test_inversion_lowers_the_feature_distance() -> None:
    loaded = tiny()
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    result = spec_run("inversion", loaded, {"image": image}, layer="features.1", steps=150, tv_weight=0.0, lr=0.05)
    distance = result.history["distance_features.1"]
    assert distance[-1] < 0.2 * distance[0]
    ladder = spec_run("inversion_ladder", loaded, {"image": image}, layers=2, steps=5)
    assert ladder.labels["layers"] == "features.1, features.4"
    assert ladder.images["result"].shape[-1] > 3 * 16  # original + two reconstructions in a row


def test_deepdream_raises_the_layer_norm() -> None:
    loaded = tiny()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    result = spec_run("deepdream", loaded, {"image": image}, layer="features.4", octaves=1, steps=20, size=32)
    history = result.history["layer_l2"]
    assert history[-1] > 1.5 * history[0] and result.images["result"].shape == (3, 32, 32)


def test_texture_synthesis_cuts_the_gram_distance() -> None:
    loaded = tiny()
    stripes = torch.zeros(3, 32, 32)
    stripes[:, ::4] = 1.0
    # Adam: on these binary stripes L-BFGS's small capped steps settle in a local minimum (0.64 at lr 0.05)
    result = spec_run("texture", loaded, {"image": stripes}, size=32, source_size=32, steps=200, lr=0.05,
                      optimizer="adam", network="random_vgg")
    assert result.scalars["gram_reduction"] >= 0.9
    assert "random weights" in result.labels["network"]


def test_efros_leung_copies_source_pixels_only_and_is_seeded() -> None:
    loaded = tiny()
    source = torch.zeros(3, 16, 16)
    source[0, :, ::2] = 1.0  # red and black columns
    source[2, ::3] = 0.5
    a = spec_run("efros_leung", loaded, {"image": source}, size=12, source_size=16, window=5, seed=1)
    b = spec_run("efros_leung", loaded, {"image": source}, size=12, source_size=16, window=5, seed=1)
    out = a.images["result"]
    assert torch.equal(out, b.images["result"]) and out.shape == (3, 12, 12)
    colours = {tuple(c.tolist()) for c in a.images["source"].reshape(3, -1).T}
    assert all(tuple(c.tolist()) in colours for c in out.reshape(3, -1).T)


def _style_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    content = torch.rand(3, 32, 32, generator=g) * 0.2 + 0.4
    style = torch.zeros(3, 32, 32)
    style[0, ::4] = 1.0
    style[1, :, ::3] = 1.0
    return {"content": content, "style": style}


def test_style_loss_falls_as_the_style_weight_rises_along_each_column() -> None:
    result = spec_run("style_grid", tiny(), _style_inputs(), ratios=(10.0, 1.0, 0.01), scales=(1.0, 2.0), size=32,
                      steps=40, network="random_vgg")
    for c in range(2):
        losses = [result.scalars[f"style_loss_{r}_{c}"] for r in range(3)]
        assert losses[0] > losses[1] > losses[2], losses
    again = spec_run("style_grid", tiny(), _style_inputs(), ratios=(10.0, 1.0, 0.01), scales=(1.0, 2.0), size=32,
                     steps=40, network="random_vgg")
    assert again.scalars["cached_cells"] == 6 and torch.equal(again.images["result"], result.images["result"])


def test_style_transfer_blends_and_checks_its_inputs() -> None:
    loaded = tiny()
    inputs = _style_inputs()
    result = spec_run("style", loaded, inputs, size=32, steps=20, network="random_vgg")
    assert result.history["style_loss"][-1] < result.history["style_loss"][0]
    assert set(result.images) == {"result", "content", "style"}
    with pytest.raises(SchemaError) as info:
        spec_run("style", loaded, {**inputs, "style_2": inputs["style"]}, size=32, steps=1, style_blend=(0.7, 0.7))
    assert info.value.field == "params.style_blend"
    with pytest.raises(SchemaError) as info:
        parse_request({"content": "aGk=", "style": "aGk=", "style_5": "aGk="}, ("content", "style"),
                      ("style_2", "style_3", "style_4"))
    assert info.value.field == "style_5"


def test_colour_preservation_keeps_the_content_chrominance() -> None:
    content = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 0.5 + 0.25
    result = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6)) * 0.5 + 0.25
    mixed = preserve_color(result, content)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((mixed * luma).sum(1), (result * luma).sum(1), atol=1e-5)
    assert torch.allclose(mixed - (mixed * luma).sum(1, keepdim=True), content - (content * luma).sum(1, keepdim=True),
                          atol=1e-5)


def test_a_missing_perceptual_network_is_an_error_never_a_silent_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import convlens.techniques.synthesis.perceptual as module

    monkeypatch.setattr(module, "find_weights", lambda name: None)
    with pytest.raises(SchemaError) as info:
        perceptual("vgg19", tiny())
    assert info.value.field == "params.network" and "weights fetch vgg19" in info.value.message
    assert perceptual("auto", tiny()).name == "random_vgg"


def test_limits_are_refused_naming_the_field() -> None:
    loaded = tiny()
    for params, field in (({"steps": 100_000}, "params.steps"), ({"size": 4096}, "params.size"),
                          ({"lr": -1.0}, "params.lr")):
        with pytest.raises(SchemaError) as info:
            run(loaded, "classviz", [{}], [1], params=params)
        assert info.value.field == field
    with pytest.raises(SchemaError) as info:
        run(loaded, "classviz", [{}], [None], params={"steps": 2})
    assert info.value.field == "target"
    for params, field in (({"loss": "hinge"}, "params.loss"), ({"momentum": 1.5}, "params.momentum")):
        with pytest.raises(SchemaError) as info:
            run(loaded, "fooling", [{"image": torch.rand(3, 16, 16)}], [1], params=params)
        assert info.value.field == field


def test_stripe_classes_are_drawn_on_their_own_frequency_axis() -> None:
    """The built-in model's horizontal stripes vary along y: their visualisation's spectral energy sits on the
    vertical-frequency axis, and the other way round for vertical stripes."""
    loaded = load_model("builtin")
    energy = {}
    for label in ("horizontal_stripes", "vertical_stripes"):
        [out] = run(loaded, "classviz", [{}], [loaded.classes.index(label)], params={"steps": 120})
        grey = out.images["result"].mean(0)
        power = torch.fft.fftshift(torch.fft.fft2(grey - grey.mean()).abs()) ** 2
        f = (torch.arange(power.shape[0]) - power.shape[0] // 2).abs().float()
        fy, fx = f[:, None], f[None, :]
        # energy in the cones around each frequency axis (within ~27° of it)
        energy[label] = (float(power[fy > 2 * fx].sum()), float(power[fx > 2 * fy].sum()))
    assert energy["horizontal_stripes"][0] > 1.5 * energy["horizontal_stripes"][1], energy
    assert energy["vertical_stripes"][1] > 1.5 * energy["vertical_stripes"][0], energy
