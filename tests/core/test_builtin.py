"""The built-in dataset, its training loop and the committed checkpoint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from convlens.builtin.dataset import CLASSES, HELDOUT_SEED, ShapesDataset, render_batch, render_sample
from convlens.builtin.net import BuiltinNet
from convlens.builtin.train import (
    CHECKPOINT_PATH,
    TrainConfig,
    _add_noise,
    _augment,
    _training_set,
    focus_penalty,
    load_checkpoint,
    predict,
    recalibrate_batchnorm,
    train,
)


def test_samples_are_a_pure_function_of_seed_and_index() -> None:
    a, b = render_sample(5, 17), render_sample(5, 17)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.label == b.label
    assert not np.array_equal(render_sample(6, 17).image, a.image)
    images, masks, labels = render_batch(5, 4, start=15)
    for k in range(4):
        s = render_sample(5, 15 + k)
        assert np.array_equal(images[k], s.image) and np.array_equal(masks[k], s.mask) and labels[k] == s.label


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool mask dilated by ``px`` pixels (square neighbourhood)."""
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(mask)[None, None].float(), 2 * px + 1, 1, px)
    return grown[0, 0].numpy() > 0


def test_every_class_is_rendered_with_a_visible_object_and_its_mask() -> None:
    images, masks, labels = render_batch(HELDOUT_SEED, 60)
    assert set(labels.tolist()) == set(range(len(CLASSES)))
    assert images.shape == (60, 64, 64, 3) and images.dtype == np.uint8 and masks.dtype == bool
    area = masks.mean(axis=(1, 2))
    assert (area > 0.02).all() and (area < 0.6).all()
    for img, mask in zip(images.astype(float), masks, strict=True):
        ring = np.zeros_like(mask)  # background just outside the object
        grown = _grow(mask, 3)
        ring[grown & ~mask] = True
        inside, outside = img[mask].mean(axis=0), img[ring].mean(axis=0)
        assert np.linalg.norm(inside - outside) > 20, "the object is not visible against its background"


def _gradients(img: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean |difference| between vertical and between horizontal neighbours, both inside the object."""
    rgb = img.astype(float)  # colour differences: the two stripe colours may have the same brightness
    vertical = np.abs(np.diff(rgb, axis=0)).sum(axis=2)[mask[1:] & mask[:-1]].mean()
    horizontal = np.abs(np.diff(rgb, axis=1)).sum(axis=2)[mask[:, 1:] & mask[:, :-1]].mean()
    return vertical, horizontal


@pytest.mark.parametrize("index", range(6))
def test_stripes_run_the_way_their_class_says(index: int) -> None:
    horizontal = render_sample(HELDOUT_SEED, 10 * index + CLASSES.index("horizontal_stripes"))
    v, h = _gradients(horizontal.image, horizontal.mask)
    assert v > 1.1 * h  # horizontal stripes change colour going down (the grain adds the same to both)
    vertical = render_sample(HELDOUT_SEED, 10 * index + CLASSES.index("vertical_stripes"))
    v, h = _gradients(vertical.image, vertical.mask)
    assert h > 1.1 * v


def test_dataset_tensors() -> None:
    ds = ShapesDataset(HELDOUT_SEED, 3)
    image, label, mask = ds[2]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= float(image.min()) <= 1
    assert mask.shape == (1, 64, 64) and mask.dtype == torch.bool and label == render_sample(HELDOUT_SEED, 2).label


def test_object_free_scenes_differ_from_their_sample_only_where_the_object_was() -> None:
    for index in range(10):
        full, empty = render_sample(3, index), render_sample(3, index, with_object=False)
        assert empty.label == full.label and not empty.mask.any()
        near = _grow(full.mask, 2)
        assert np.array_equal(empty.image[~near], full.image[~near])  # same background, clutter and noise
        changed = np.abs(empty.image.astype(int) - full.image.astype(int)).sum(axis=2) > 30
        assert changed[full.mask].mean() > 0.5


def test_training_set_adds_object_free_scenes_with_uniform_targets() -> None:
    config = TrainConfig(n_train=40, background_fraction=0.25, label_smoothing=0.1, drawn_fraction=0.0)
    images, targets, masks = _training_set(config)
    k = len(CLASSES)
    assert images.shape == (50, 3, 64, 64) and images.dtype == torch.uint8 and targets.shape == (50, k)
    assert torch.allclose(targets.sum(1), torch.ones(50))
    _, scene_masks, labels = render_batch(config.seed, 40)
    assert torch.equal(targets[:40].argmax(1), torch.from_numpy(labels))
    assert torch.equal(masks, torch.from_numpy(scene_masks))  # the labelled scenes' object masks, in order
    assert torch.allclose(targets[:40].amax(1), torch.full((40,), 0.9 + 0.1 / k))
    assert torch.allclose(targets[40:], torch.full((10, k), 1.0 / k))
    empty, _, _ = render_batch(config.seed, 10, start=40, with_object=False)
    assert torch.equal(images[40:], torch.from_numpy(empty).permute(0, 3, 1, 2))


def test_training_loop_smoke_the_loss_falls() -> None:
    config = TrainConfig(n_train=512, epochs=3, batch_size=32, lr=3e-3, background_fraction=0.0, input_noise=0.0,
                         drawn_fraction=0.0)
    model, history = train(config)
    losses = [h["loss"] for h in history]
    assert len(losses) == 48 and not model.training
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1


def test_input_noise_has_the_requested_std_in_pixel_units() -> None:
    x = torch.zeros(8, 3, 64, 64)
    gen = torch.Generator().manual_seed(0)
    assert _add_noise(x, 0.0, gen) is x
    noisy = _add_noise(x, 0.2, gen)
    assert abs(float(noisy.std()) - 0.2 / 0.25) < 0.01  # inputs are normalised with std 0.25
    assert abs(float(noisy.mean())) < 0.01


def test_input_noise_on_part_of_the_batch_leaves_the_rest_clean() -> None:
    x = torch.zeros(8, 3, 16, 16)
    noisy = _add_noise(x, 0.25, torch.Generator().manual_seed(0), fraction=0.25)
    assert noisy.shape == x.shape
    assert (noisy[:2].std(dim=(1, 2, 3)) > 0.9).all() and torch.equal(noisy[2:], x[2:])  # round(0.25 · 8) = 2


def test_flips_move_masks_with_their_images() -> None:
    images = torch.zeros(16, 3, 8, 8, dtype=torch.uint8)
    images[:, :, 0, 1] = 255  # one bright pixel near the top-left corner ...
    masks = images[:, 0] > 0  # ... and a mask holding exactly that pixel
    flipped, flipped_masks = _augment(images, torch.Generator().manual_seed(3), masks)
    assert flipped_masks is not None and torch.equal(flipped_masks, flipped[:, 0] > 0)
    corners = {(int(i), int(j)) for i, j in zip(*torch.nonzero(flipped_masks)[:, 1:].T, strict=True)}
    assert corners == {(0, 1), (0, 6), (7, 1), (7, 6)}  # 16 samples: every flip combination occurs


def test_focus_penalty_is_the_gradient_energy_share_outside_the_mask() -> None:
    # A linear "model" whose class-0 logit is Σ w·x: the input gradient is w everywhere, so the share is
    # Σ_outside w² / Σ w², worked out by hand for a 2×2 image with weights 1, 2, 3, 4 (one channel).
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        linear[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([[[True, False], [False, True]]])  # inside: weights 1 and 4
    share = focus_penalty(linear, x, torch.tensor([0]), mask)
    assert share.item() == pytest.approx((4 + 9) / 30)
    share.backward()  # differentiable in the weights: moving weight into the mask lowers it
    grad = linear[1].weight.grad[0]
    assert grad[0] < 0 and grad[3] < 0 and grad[1] > 0 and grad[2] > 0


def test_descending_the_focus_penalty_moves_the_gradient_into_the_object() -> None:
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    images, masks, labels = render_batch(HELDOUT_SEED, 8, size=32)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    args = (x, torch.from_numpy(labels), torch.from_numpy(masks))
    before = float(focus_penalty(net, *args))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        focus_penalty(net, *args).backward()
        opt.step()
    assert float(focus_penalty(net, *args)) < before - 0.2, before


def test_training_with_the_focus_penalty_uses_it() -> None:
    base = TrainConfig(n_train=64, epochs=1, batch_size=32, background_fraction=0.1, input_noise=0.0,
                       drawn_fraction=0.0)
    weights = []
    for penalty in (0.0, 1.0):
        model, history = train(dataclasses.replace(base, focus_penalty=penalty, focus_samples=4))
        assert len(history) == 3 and all(np.isfinite(h["loss"]) for h in history)
        weights.append(model.features[0].weight)
    assert not torch.allclose(weights[0], weights[1])


def test_recalibrate_batchnorm_averages_clean_batch_statistics() -> None:
    conv = torch.nn.Conv2d(3, 2, 3, bias=False)
    model = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(2, momentum=0.3))
    model[1].running_mean.fill_(5.0)  # stale statistics, as left by noisy training
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    recalibrate_batchnorm(model, images, batch_size=4)
    with torch.no_grad():
        out = conv(images.float() / 255 * 4 - 2)  # _to_input: (x - 0.5) / 0.25
    batches = out.split(4)
    expected_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    expected_var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(model[1].running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, expected_var, atol=1e-4)
    assert model[1].momentum == 0.3 and not model.training
    assert torch.equal(model[0].weight, conv.weight)
    recalibrate_batchnorm(model, images[:3], batch_size=4)  # fewer images than a batch: one batch of all
    assert torch.allclose(model[1].running_mean, out[:3].mean((0, 2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="at least one image"):
        recalibrate_batchnorm(model, images[:0])


def test_noisy_training_ends_with_batchnorm_statistics_of_clean_images() -> None:
    config = TrainConfig(n_train=64, epochs=1, batch_size=32, background_fraction=0.0, input_noise=0.25,
                         drawn_fraction=0.0)
    model, _ = train(config)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    images, _, _ = _training_set(config)
    recalibrate_batchnorm(model, images, config.batch_size)  # again, on the same clean images
    assert all(torch.allclose(stats[k], v, atol=1e-5) for k, v in model.state_dict().items() if "running" in k)


def test_committed_checkpoint_classifies_fresh_images() -> None:
    assert CHECKPOINT_PATH.stat().st_size <= 10 * 1024 * 1024
    model, meta = load_checkpoint(CHECKPOINT_PATH)
    assert list(meta["classes"]) == list(CLASSES) and meta["image_size"] == 64
    assert set(model.state_dict()) == set(BuiltinNet().state_dict())
    assert model.features[0].kernel_size[0] >= 5 and model.features[0].out_channels >= 32
    assert model.code[1].out_features >= 128
    images, _, labels = render_batch(7, 200)  # a seed neither training nor evaluation uses
    assert (predict(model, images) == labels).mean() >= 0.95


def test_drawn_scenes_are_flat_pure_and_leave_the_held_out_set_alone() -> None:
    from convlens.builtin.dataset import render_drawn_batch

    a, la = render_drawn_batch(3, 10, start=50)
    b, lb = render_drawn_batch(3, 10, start=50)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and la.tolist() == [(50 + k) % 10 for k in range(10)]
    assert a.shape == (10, 64, 64, 3)
    noisy = render_sample(3, 50, 128).image.astype(float)
    flat = render_sample(3, 50, 128, drawn=True).image.astype(float)
    # No grain or sensor noise: neighbouring background pixels are (almost) equal in a drawing.
    assert np.abs(np.diff(flat[:8, :8], axis=1)).mean() < 1.5 < np.abs(np.diff(noisy[:8, :8], axis=1)).mean()


def test_training_set_adds_drawn_scenes_with_their_labels() -> None:
    from convlens.builtin.dataset import render_drawn_batch

    config = TrainConfig(n_train=40, background_fraction=0.25, drawn_fraction=0.5, label_smoothing=0.0)
    images, targets, _ = _training_set(config)
    assert images.shape == (70, 3, 64, 64)  # 40 scenes, 20 drawn, 10 object-free
    drawn, labels = render_drawn_batch(config.seed, 20, start=50)
    assert torch.equal(images[40:60], torch.from_numpy(drawn).permute(0, 3, 1, 2))
    assert targets[40:60].argmax(1).tolist() == labels.tolist()
