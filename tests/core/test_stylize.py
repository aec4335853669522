"""Fast style transfer: the conditional-IN network, its training (loss falls, resume is exact), the blend
property on the committed built-in network, and the technique's validation and batching."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convlens import registry
from convlens.cli import main as cli_main
from convlens.models import LoadedModel, Preprocessing
from convlens.pipeline import run
from convlens.schema import SchemaError
from convlens.techniques.stylize.net import NetConfig, StyleNet, grow, one_hot
from convlens.techniques.stylize.stylize import BUILTIN_CHECKPOINT, load_stylenet
from convlens.training.stylize import TrainConfig, Trainer, perceptual_losses, sample_batch
from tests.conftest import TinyCNN

# fast/Gatys style-loss ratios of the built-in network (bench/style.py): the goal, ≤ 2× for every style.
# Against the same 800-step Gatys results the first balanced network had a worst ratio of 5.6× (brick), the
# Johnson-size one before its 256-px fine-tuning 3.8× (coffee), and an unbalanced one hubble 0.62×,
# immunohistochemistry 7.5×, coffee 13×, brick 76× (a spread of 120×): every one of them fails these bounds.
MAX_FAST_OVER_GATYS = 2.0
MAX_RATIO_SPREAD = 20.0  # the worst style's ratio at most 20× the best's
TINY_NET = NetConfig(widths=(4, 8, 8), blocks=1)
TINY = TrainConfig(steps=4, batch=2, size=32, style_size=32, lr=1e-2, scenes=0, checkpoint_every=2, net=TINY_NET)


def styles() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    stripes = torch.zeros(3, 40, 40)
    stripes[:, :, ::4] = 1.0
    return [stripes, torch.rand(3, 40, 40, generator=g) * torch.tensor([1.0, 0.2, 0.2])[:, None, None]]


def pool() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return [torch.rand(3, 48, 56, generator=g), torch.rand(3, 40, 40, generator=g).pow(2)]


def trainer(config: TrainConfig = TINY) -> Trainer:
    return Trainer(styles(), ["stripes", "red"], pool(), config)


def tiny_loaded() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel("tiny", TinyCNN().eval().requires_grad_(False), tuple("abcde"),
                       Preprocessing(16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), "random")


def held_out_loss(t: Trainer) -> float:
    x = sample_batch(t.pool, 4, t.config.size, torch.Generator().manual_seed(99))
    blend = one_hot(torch.tensor([0, 1, 0, 1]), 2)
    with torch.no_grad():
        parts = perceptual_losses(t.perceptual, t.model(x, blend), x, t.targets, blend)
    c = t.config
    return float((c.content_weight * parts["content"] + c.style_weight * parts["style"]
                  + c.tv_weight * parts["tv"]).mean())


# ------------------------------------------------------------------------------------ the network


def test_one_hot_blend_equals_a_single_style_network() -> None:
    torch.manual_seed(0)
    multi = StyleNet(3, TINY_NET)
    with torch.no_grad():  # distinct scales and shifts per style
        for name, p in multi.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.randn_like(p))
    single = StyleNet(1, TINY_NET)
    state = {k: (v[1:2] if k.endswith(("gamma", "beta")) else v) for k, v in multi.state_dict().items()}
    single.load_state_dict(state)
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        ours, theirs = multi(x, one_hot(1, 3)), single(x, torch.ones(1))
        other = multi(x, one_hot(0, 3))
    assert ours.shape == x.shape
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(ours, other, atol=1e-3)  # the styles really differ


def test_a_blend_mixes_the_normalisation_parameters_linearly() -> None:
    torch.manual_seed(1)
    net = StyleNet(2, TINY_NET)
    norm = net.layers[0].norm
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[1.0] * 4, [3.0] * 4]))
    blend = torch.tensor([[0.25, 0.75]])
    assert torch.allclose(blend @ norm.gamma, torch.full((1, 4), 2.5))


def randomised(net: StyleNet) -> StyleNet:
    """Every parameter drawn at random (scales and shifts too), so no part of the network is an identity."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if name.endswith("gamma") else 0.0))
    return net


def test_the_colour_head_is_per_style_and_mixed_by_the_blend() -> None:
    torch.manual_seed(0)
    plain = randomised(StyleNet(2, TINY_NET))
    coloured = StyleNet(2, NetConfig(widths=TINY_NET.widths, blocks=TINY_NET.blocks, color=True))
    grow(coloured, plain.state_dict(), TINY_NET)
    assert coloured.color is not None
    swap = torch.eye(3)[[2, 0, 1]]
    with torch.no_grad():  # style 1 permutes the output logits' channels; style 0 keeps the identity
        coloured.color.matrix[1].copy_(swap)
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(coloured(x, one_hot(0, 2)), plain(x, one_hot(0, 2)), atol=1e-6)
        assert torch.allclose(coloured(x, one_hot(1, 2)), plain(x, one_hot(1, 2))[:, [2, 0, 1]], atol=1e-6)
    blend = torch.tensor([0.25, 0.75])
    assert torch.allclose(torch.einsum("s,sij->ij", blend, coloured.color.matrix),
                          0.25 * torch.eye(3) + 0.75 * swap)


def test_a_grown_network_computes_the_function_of_the_one_it_grew_from() -> None:
    torch.manual_seed(0)
    small = randomised(StyleNet(2, TINY_NET))
    big_config = NetConfig(widths=TINY_NET.widths, blocks=TINY_NET.blocks + 2, color=True)
    big = StyleNet(2, big_config)
    grow(big, small.state_dict(), TINY_NET)
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        for blend in (one_hot(0, 2), one_hot(1, 2), torch.tensor([0.3, 0.7])):
            assert torch.allclose(big(x, blend), small(x, blend), atol=1e-6)
    # the decoder moved past the new blocks, which are identities only through their zeroed last norm
    assert torch.equal(big.layers[-1].conv.weight, small.layers[-1].conv.weight)
    with torch.no_grad():
        big.layers[3 + TINY_NET.blocks].b.norm.gamma.fill_(0.5)
        assert not torch.allclose(big(x, one_hot(0, 2)), small(x, one_hot(0, 2)), atol=1e-3)
    with pytest.raises(ValueError, match="cannot grow"):
        grow(StyleNet(2, TINY_NET), big.state_dict(), big_config)  # never shrinks
    with pytest.raises(ValueError, match="cannot grow"):
        grow(StyleNet(2, NetConfig(widths=(4, 8, 12), blocks=3)), small.state_dict(), TINY_NET)


def test_training_goes_on_in_a_grown_network_and_its_card_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = trainer()
    first.train(steps=2, checkpoint=tmp_path / "a.pt")
    grown_net = NetConfig(widths=TINY_NET.widths, blocks=TINY_NET.blocks + 1, color=True)
    grown = trainer(TrainConfig(**{**TINY.to_dict(), "net": grown_net, "steps": 4}))
    with pytest.raises(ValueError, match="checkpoint network"):
        grown.load(tmp_path / "a.pt")  # a plain resume refuses another shape
    grown.load(tmp_path / "a.pt", grown=True)
    assert grown.step_count == 2 and not grown.optimizer.state  # the steps go on, Adam restarts
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(grown.model(x, one_hot(1, 2)), first.model(x, one_hot(1, 2)), atol=1e-6)
    grown.train(checkpoint=tmp_path / "b.pt")
    assert len(grown.history["loss"]) == 4 and grown.history["loss"][:2] == first.history["loss"]
    card = json.loads((tmp_path / "b.card.json").read_text())
    assert [(s["until_step"], s["train"]["net"]["blocks"]) for s in card["stages"]] == [(2, 1), (4, 2)]
    text = (tmp_path / "b.card.md").read_text()
    assert "steps 2–4: network grown to widths [4, 8, 8], 2 residual blocks, per-style colour head" in text
    assert "steps 0–2: network grown" not in text
    loaded, _, _ = load_stylenet(tmp_path / "b.pt")
    assert loaded.color is not None and len(loaded.layers) == 3 + 2 + 2


# ------------------------------------------------------------------------------------ training


def test_a_few_training_steps_on_a_tiny_set_lower_the_loss() -> None:
    t = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "steps": 40}))
    before = held_out_loss(t)
    t.train()
    after = held_out_loss(t)
    assert t.step_count == 40 and len(t.history["loss"]) == 40
    assert after < 0.8 * before, (before, after)


def test_save_and_resume_continue_exactly_like_an_uninterrupted_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    straight = trainer()
    straight.train(steps=4)
    first = trainer()
    first.train(steps=2, checkpoint=tmp_path / "a.pt")
    state = torch.load(tmp_path / "a.pt", weights_only=True)  # a plain dict: no pickled code
    assert state["step"] == 2 and state["styles"] == ["stripes", "red"]
    resumed = trainer()
    resumed.load(tmp_path / "a.pt")
    resumed.train(steps=4)
    assert resumed.history["loss"] == straight.history["loss"]
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    card = json.loads((tmp_path / "a.card.json").read_text())
    assert card["styles"] == ["stripes", "red"] and "random" in card["perceptual_network"].lower()
    assert "no pretrained weights" in (tmp_path / "a.card.md").read_text().lower()


def test_the_perceptual_losses_run_the_network_only_as_deep_as_their_layers() -> None:
    from convlens.hooks import capture
    from convlens.techniques.synthesis import objectives as obj
    from convlens.training.stylize import upto

    t = trainer()
    vgg = t.perceptual.net
    names = [name for name, _ in vgg.named_children()]
    deepest = max(names.index(layer) for layer in (*t.perceptual.style_layers, t.perceptual.content_layer))
    assert deepest < len(names) - 1  # there is something to skip
    assert list(dict(upto(vgg, ["relu2_1"]).named_children())) == names[:names.index("relu2_1") + 1]
    assert upto(vgg, ["no_such_layer"]) is vgg
    calls: list[str] = []
    hooks = [vgg.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: calls.append(n))
             for name in names[deepest + 1:]]
    x = sample_batch(t.pool, 2, 32, torch.Generator().manual_seed(1))
    blend = one_hot(torch.tensor([0, 1]), 2)
    y = t.model(x, blend)
    parts = perceptual_losses(t.perceptual, y, x, t.targets, blend)
    for h in hooks:
        h.remove()
    assert calls == []
    layer = t.perceptual.content_layer  # the same content loss as through the whole network
    with torch.no_grad(), capture(vgg, [layer], detach=True) as full, capture(vgg, [layer], detach=True) as out:
        vgg(t.perceptual.to_input(x))
        reference = full[layer]
        vgg(t.perceptual.to_input(y))
    whole, _ = obj.feature_distance(layer, reference)(obj.Context(y, out.activations, None))
    assert torch.allclose(parts["content"], whole, atol=1e-6)


def test_the_weights_moving_average_follows_each_step_and_resumes_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    averaged = TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "ema": 0.5})
    t = trainer(averaged)
    seen = [{k: v.clone() for k, v in t.model.state_dict().items()}]
    for _ in range(2):
        t.train(steps=t.step_count + 1)
        seen.append({k: v.clone() for k, v in t.model.state_dict().items()})
    assert t.ema is not None
    for k, v in t.ema.items():  # 0.5 · (0.5 · w0 + 0.5 · w1) + 0.5 · w2
        assert torch.allclose(v, 0.25 * seen[0][k] + 0.25 * seen[1][k] + 0.5 * seen[2][k], atol=1e-6), k
    straight = trainer(averaged)
    straight.train(steps=4)
    first = trainer(averaged)
    first.train(steps=2, checkpoint=tmp_path / "a.pt")
    resumed = trainer(averaged)
    resumed.load(tmp_path / "a.pt")
    resumed.train(steps=4)
    assert straight.ema is not None and resumed.ema is not None
    assert all(torch.equal(v, resumed.ema[k]) for k, v in straight.ema.items())
    assert trainer().ema is None and "ema_state_dict" not in trainer().state()


def test_export_ships_the_moving_average_only_when_asked(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    t = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "ema": 0.9}))
    t.train(steps=3, checkpoint=tmp_path / "a.pt")
    assert cli_main(["style", "export", str(tmp_path / "a.pt"), str(tmp_path / "raw.pt")]) == 0
    assert cli_main(["style", "export", str(tmp_path / "a.pt"), str(tmp_path / "avg.pt"), "--ema"]) == 0
    raw, avg = (torch.load(tmp_path / p, weights_only=True) for p in ("raw.pt", "avg.pt"))
    assert "ema_state_dict" not in raw and "ema_state_dict" not in avg
    assert t.ema is not None
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in raw["state_dict"].items())
    assert all(torch.equal(v, t.ema[k]) for k, v in avg["state_dict"].items())
    assert not all(torch.equal(v, raw["state_dict"][k]) for k, v in avg["state_dict"].items())
    assert "**Weights**: moving average of the training weights (decay 0.9)" in (tmp_path / "avg.card.md").read_text()
    assert "**Weights**: the training weights at the last step" in (tmp_path / "raw.card.md").read_text()
    trainer().train(steps=1, checkpoint=tmp_path / "plain.pt")
    capsys.readouterr()
    assert cli_main(["style", "export", str(tmp_path / "plain.pt"), str(tmp_path / "x.pt"), "--ema"]) == 1
    assert "no moving average" in capsys.readouterr().err


def test_balance_divides_each_image_by_its_styles_running_mean() -> None:
    t = trainer()
    which = torch.tensor([0, 0, 1])
    first = t._balance(which, torch.tensor([1.0, 3.0, 200.0]))
    assert first.tolist() == [2.0, 2.0, 200.0]  # first sight: the batch mean of that style
    second = t._balance(torch.tensor([1]), torch.tensor([100.0]), decay=0.5)
    assert second.tolist() == [150.0] and t.running.tolist() == [2.0, 150.0]  # style 0 untouched


def test_resumed_runs_are_recorded_as_stages_and_equal_configs_merge(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = trainer()
    first.train(steps=2, checkpoint=tmp_path / "a.pt")
    again = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "steps": 3}))  # only the budget differs
    again.load(tmp_path / "a.pt")
    again.train(checkpoint=tmp_path / "a.pt")
    slower = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "steps": 4, "lr": 1e-3}))
    slower.load(tmp_path / "a.pt")
    assert slower.optimizer.param_groups[0]["lr"] == 1e-3  # this run's rate, not the saved one
    slower.train(checkpoint=tmp_path / "a.pt")
    stages = json.loads((tmp_path / "a.card.json").read_text())["stages"]
    assert [(s["until_step"], s["train"]["lr"]) for s in stages] == [(3, TINY.lr), (4, 1e-3)]


def test_content_pool_is_the_corpus_photos_plus_scenes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from convlens.corpus.datasets import natural_sources
    from convlens.training.stylize import content_pool

    Image.new("RGB", (20, 30), (1, 2, 3)).save(tmp_path / "x.png")
    photos = [name for name, _ in natural_sources() if name != "astronaut"]
    pool, sources = content_pool(tmp_path, scenes=3, size=32, exclude=("astronaut",))
    assert len(pool) == len(photos) + 3 + 1 and pool[-1].shape == (3, 30, 20)
    assert "astronaut" not in sources[0] and all(name in sources[0] for name in photos)


def test_style_train_command_writes_checkpoint_card_and_resumes(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    for k, img in enumerate(styles()):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(tmp_path / f"s{k}.png")
    common = ["style", "train", "--style", str(tmp_path / "s0.png"), "--style", str(tmp_path / "s1.png"),
              "--out", str(tmp_path / "net.pt"), "--size", "32", "--batch", "1", "--scenes", "2",
              "--checkpoint-every", "1", "--threads", "1", "--widths", "4", "8", "12", "--blocks", "2"]
    assert cli_main([*common, "--steps", "1"]) == 0
    assert cli_main([*common, "--steps", "2", "--resume"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 2 and out["styles"] == ["s0", "s1"]
    card = json.loads((tmp_path / "net.card.json").read_text())
    assert card["steps"] == 2 and any("scikit-image" in s for s in card["content_data"])
    assert card["network"] == {"widths": [4, 8, 12], "blocks": 2}
    # the loader builds the network from the checkpoint's config: 2 residual blocks between 3 + 2 stages
    net, names, _ = load_stylenet(tmp_path / "net.pt")
    assert len(net.layers) == 3 + 2 + 2 and net.layers[2].conv.out_channels == 12 and names == ("s0", "s1")
    assert cli_main([*common[:-6], "--steps", "3", "--resume"]) == 1  # resuming with another shape says so
    assert "checkpoint network" in capsys.readouterr().err
    grown = str(tmp_path / "grown.pt")  # --grow-from: a larger network from this one, its steps going on
    assert cli_main([*common[:-1], "3", "--color", "--steps", "3", "--grow-from", str(tmp_path / "net.pt"),
                     "--out", grown]) == 0
    card = json.loads((tmp_path / "grown.card.json").read_text())
    assert card["steps"] == 3 and card["network"] == {"widths": [4, 8, 12], "blocks": 3, "color": True}


def test_the_card_states_the_content_style_trade_off_its_own_losses_show(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The Limitations line gives the run's weights and how far its content and style losses fell (the built-in
    network's content loss barely moved, 0.75 → 0.71, which is why its results lose the layout at strength 1)."""
    from convlens.training.stylize import card

    t = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "content_weight": 2.5, "style_weight": 7.0}))
    t.train(steps=2, checkpoint=tmp_path / "net.pt")
    losses = card(t.state())["losses"]
    [line] = [s for s in (tmp_path / "net.card.md").read_text().splitlines() if s.startswith("- **Limitations**")]
    assert "(weights 2.5 / 7.0)" in line
    assert f"content loss went {losses['content']['first_50']} → {losses['content']['last_50']}" in line
    assert f"style loss went {losses['style']['first_50']} → {losses['style']['last_50']}" in line
    assert "dark style image" in line


def test_export_drops_the_optimiser_state_and_stylises_identically(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    t = trainer()
    t.train(steps=2, checkpoint=tmp_path / "a.pt")
    assert cli_main(["style", "export", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    full, shipped = (torch.load(tmp_path / p, weights_only=True) for p in ("a.pt", "b.pt"))
    assert "optimizer" in full and "optimizer" not in shipped
    assert set(full) - set(shipped) == {"optimizer"}
    # Adam keeps two moments per parameter: the export is about a third of the file
    assert (tmp_path / "b.pt").stat().st_size < 0.5 * (tmp_path / "a.pt").stat().st_size
    x = torch.rand(1, 3, 24, 32)
    (a, _, _), (b, _, _) = load_stylenet(tmp_path / "a.pt"), load_stylenet(tmp_path / "b.pt")
    assert torch.equal(a(x, one_hot(1, 2)), b(x, one_hot(1, 2)))
    card = json.loads((tmp_path / "b.card.json").read_text())
    assert card["steps"] == 2 and card["optimizer_state"] is False
    assert "without the optimiser state" in (tmp_path / "b.card.md").read_text()
    resumed = trainer()  # resuming restarts Adam but keeps the weights, step count and history
    resumed.load(tmp_path / "b.pt")
    assert resumed.step_count == 2 and not resumed.optimizer.state
    resumed.train(steps=3)
    assert len(resumed.history["loss"]) == 3


# ------------------------------------------------------------------------------------ the built-in network


def content_image() -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(skimage.data.astronaut().copy()).permute(2, 0, 1).float()[None] / 255


def test_builtin_checkpoint_loads_plainly_and_has_four_styles() -> None:
    state = torch.load(BUILTIN_CHECKPOINT, weights_only=True)
    assert len(state["styles"]) >= 4 and BUILTIN_CHECKPOINT.stat().st_size < 10e6
    assert {"hubble", "coffee", "brick"} <= set(state["styles"])


def test_style_loss_towards_a_falls_as_its_blend_weight_rises() -> None:
    from convlens.techniques.synthesis.common import fit
    from convlens.techniques.synthesis.perceptual import network
    from convlens.training.stylize import style_targets

    net, names, _ = load_stylenet(BUILTIN_CHECKPOINT)
    a, b = names.index("hubble"), names.index("brick")
    percept = network("random_vgg", "cpu")
    root = BUILTIN_CHECKPOINT.parents[2] / "dashboard" / "samples" / "styles"
    style_a = torch.from_numpy(__import__("numpy").asarray(Image.open(root / "hubble.png").convert("RGB")).copy())
    targets = style_targets(percept, [style_a.permute(2, 0, 1).float() / 255], 128)
    x = fit(content_image()[0], 128)
    losses = []
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        blend = torch.zeros(1, len(names))
        blend[0, a], blend[0, b] = w, 1 - w
        with torch.no_grad():
            y = net(x, blend)
            losses.append(float(perceptual_losses(percept, y, x, targets, torch.ones(1, 1))["style"]))
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False)), losses


def test_no_builtin_style_is_under_trained_relative_to_the_others() -> None:
    """Each style's fast style loss over Gatys's (the Gatys side stored in the card by ``bench/style.py``, the
    fast side recomputed here, and checked against the card): a training that lets one style own the shared
    weights leaves the others far from what optimisation reaches and far apart from each other."""
    from convlens.techniques.synthesis.common import fit
    from convlens.techniques.synthesis.perceptual import network
    from convlens.techniques.synthesis.style import losses, style_grams
    from convlens.training.stylize import load_image

    card = json.loads(BUILTIN_CHECKPOINT.with_suffix(".card.json").read_text())
    reference = card["evaluation"]["styles"]
    net, names, _ = load_stylenet(BUILTIN_CHECKPOINT)
    assert set(reference) == set(names)
    percept = network("random_vgg", "cpu")
    root = BUILTIN_CHECKPOINT.parents[2] / "dashboard"
    x = fit(load_image(root / "samples" / "photos" / "astronaut.png"), 256)
    ratios = {}
    for k, name in enumerate(names):
        with torch.no_grad():
            y = net(x, one_hot(k, len(names)))
        targets = style_grams(percept, [load_image(root / "samples" / "styles" / f"{name}.png")], [1.0], 1.0, 256)
        fast = float(losses(percept, y, x, targets)[0][0])
        assert fast == pytest.approx(reference[name]["fast_style"], rel=1e-3, abs=1e-5)  # the card is current
        ratios[name] = fast / reference[name]["gatys_style"]
    assert max(ratios.values()) <= MAX_FAST_OVER_GATYS, ratios
    assert max(ratios.values()) <= MAX_RATIO_SPREAD * min(ratios.values()), ratios


# ------------------------------------------------------------------------------------ the technique


def stylize_run(**params: object) -> list:  # type: ignore[type-arg]
    images = [{"content": Image.new("RGB", (40, 30), (200, 40 * i, 90))} for i in range(2)]
    return run(tiny_loaded(), "stylize", images, params={"size": 64, **params})


def test_stylize_batches_requests_and_each_result_equals_its_own_run() -> None:
    together = stylize_run(style="coffee")
    alone = run(tiny_loaded(), "stylize", [{"content": Image.new("RGB", (40, 30), (200, 40, 90))}],
                params={"size": 64, "style": "coffee"})
    assert [o.scalars["batch"] for o in together] == [2.0, 2.0]
    assert together[0].images["result"].shape[-2:] == (48, 64)
    assert torch.allclose(together[1].images["result"], alone[0].images["result"], atol=1e-5)
    assert registry.get("stylize").batched and registry.get("stylize").route == "stylize"


def test_strength_zero_gives_the_content_and_a_one_hot_blend_the_style() -> None:
    [none, _] = stylize_run(style="hubble", strength=0.0)
    assert torch.allclose(none.images["result"], none.images["content"], atol=1e-5)
    [by_name, _] = stylize_run(style="hubble")
    [by_blend, _] = stylize_run(blend='{"hubble": 1.0}')
    assert torch.equal(by_name.images["result"], by_blend.images["result"])
    [mixed, _] = stylize_run(blend={"hubble": 0.5, "coffee": 0.5})
    assert not torch.allclose(mixed.images["result"], by_name.images["result"], atol=1e-3)
    assert "hubble 0.50" in mixed.labels["styles"]


@pytest.mark.parametrize(("params", "field"), [
    ({"style": "picasso"}, "params.style"),
    ({"blend": {"hubble": 0.5, "coffee": 0.4}}, "params.blend"),
    ({"blend": {"hubble": 0.5, "monet": 0.5}}, "params.blend"),
    ({"blend": {"hubble": 1.5, "coffee": -0.5}}, "params.blend"),
    ({"blend": "not json"}, "params.blend"),
    ({"blend": {"hubble": "half"}}, "params.blend.hubble"),
    ({"style": "hubble", "blend": {"hubble": 1.0}}, "params.blend"),
    ({"strength": 1.5}, "params.strength"),
    ({"size": 4096}, "params.size"),
])
def test_bad_stylize_params_name_the_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaError) as info:
        stylize_run(**params)
    assert info.value.field == field


def test_stylize_reports_one_progress_step_with_a_preview_image() -> None:
    seen: list[tuple[int, int, tuple[int, ...]]] = []
    run(tiny_loaded(), "stylize", [{"content": Image.new("RGB", (40, 30), (9, 9, 9))}], params={"size": 40},
        progress=lambda step, total, preview: seen.append((step, total, tuple(preview.shape))))
    assert seen == [(1, 1, (3, 30, 40))]


def test_a_network_of_ones_own_replaces_the_builtin_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    trainer().train(steps=1, checkpoint=tmp_path / "mine.pt")
    script = ("from convlens import registry; from convlens.registry import describe_params as d; "
              "print([p['choices'] for p in d(registry.get('stylize').params) if p['name'] == 'style'][0])")
    env = {**os.environ, "CONVLENS_STYLE_NET": str(tmp_path / "mine.pt"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['stripes', 'red']"


def test_hard_by_style_draws_the_style_whose_style_term_lags() -> None:
    t = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "hard": 1.0, "hard_by": "style"}))
    # whole losses equal (the content term dominates), style terms 1 : 9 → style 1 drawn ~90 % of the time
    t.running, t.running_style = torch.tensor([5.0, 5.0]), torch.tensor([0.1, 0.9])
    drawn = t._styles(2000)
    assert 0.86 < float((drawn == 1).float().mean()) < 0.94
    t.config = TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "hard": 1.0})  # by whole loss: even
    assert 0.45 < float((t._styles(2000) == 1).float().mean()) < 0.55


def test_a_step_updates_the_style_terms_running_mean() -> None:
    t = trainer()
    t.train(steps=1)
    seen = t.running_style > 0
    assert seen.any() and bool((t.running_style[seen] < t.running[seen]).all())  # style term < whole loss


def test_style_boost_multiplies_one_styles_weight_and_the_card_names_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from convlens.cli import _boosts

    boosted = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "style_boost": {"stripes": 3.0, "red": 3.0}}))
    row = boosted.step()
    assert row["loss"] == pytest.approx(row["content"] + 30.0 * row["style"] + TINY.tv_weight * row["tv"], rel=1e-5)
    plain = trainer().step()  # same seed, same first batch: only the style weight differs
    assert plain["style"] == pytest.approx(row["style"], rel=1e-6)
    assert plain["loss"] == pytest.approx(plain["content"] + 10.0 * plain["style"] + TINY.tv_weight * plain["tv"],
                                          rel=1e-5)
    one = trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "style_boost": {"red": 4.0}}))
    assert one.style_factor.tolist() == [1.0, 4.0]
    one.save(tmp_path / "b.pt")
    assert "style 10.0 (×4 for red)" in (tmp_path / "b.card.md").read_text()
    with pytest.raises(ValueError, match="blue"):
        trainer(TrainConfig(**{**TINY.to_dict(), "net": TINY_NET, "style_boost": {"blue": 2.0}}))
    assert _boosts(["coffee=3", "brick=0.5"]) == {"coffee": 3.0, "brick": 0.5} and _boosts(None) is None
    for bad in ("coffee", "coffee=x", "=2"):
        with pytest.raises(ValueError, match="--style-boost"):
            _boosts([bad])


def test_a_cpu_serves_a_batch_one_pass_per_image_and_an_accelerator_in_one() -> None:
    from convlens.techniques.stylize.stylize import apply, forward_chunk

    net = StyleNet(2, TINY_NET).eval()
    batches: list[int] = []
    net.register_forward_hook(lambda _m, args, _out: batches.append(int(args[0].shape[0])))
    g = torch.Generator().manual_seed(5)
    contents = [torch.rand(1, 3, 16, 16, generator=g) for _ in range(3)] + [torch.rand(1, 3, 8, 16, generator=g)]
    images, seconds, sizes = apply(net, contents, torch.tensor([0.3, 0.7]), 1.0)
    assert batches == [1, 1, 1, 1] and sizes == [3, 3, 3, 1] and all(s > 0 for s in seconds)
    with torch.no_grad():
        whole = net(torch.cat(contents[:3]), torch.tensor([0.3, 0.7]))
    assert torch.allclose(torch.cat(images[:3]), whole, atol=1e-5)  # the same results as one batched pass
    assert forward_chunk(torch.device("cpu"), 8) == 1 and forward_chunk(torch.device("cuda"), 8) == 8
