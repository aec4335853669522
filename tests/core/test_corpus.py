"""Datasets, zip safety, cached codes, projections, exact neighbours and top patches, on tiny sets whose
answers are known by hand."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convlens import registry
from convlens.corpus import codes as C
from convlens.corpus import datasets as store
from convlens.corpus.patches import crop_field, field_box, top_units
from convlens.corpus.projection import pca, project, snap_to_grid
from convlens.corpus.search import knn
from convlens.hooks import count_hooks
from convlens.images import resize_and_crop
from convlens.models import LoadedModel, Preprocessing, load_model
from convlens.pipeline import run
from convlens.receptive_field import layer_catalogue
from convlens.schema import SchemaError
from tests.conftest import TinyCNN


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv(store.DATA_DIR_ENV, str(root))
    return root


def png(colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB", size: int = 16, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), colour if len(colour) > 1 else colour[0]).save(buffer, format=fmt)
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] | None = None,
              compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buffer.getvalue()


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))} if root.exists() else {}


# ------------------------------------------------------------------------------------------------- datasets


def test_zip_with_labels_mixed_formats_and_non_images(data_dir: Path) -> None:
    cmyk = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk, format="JPEG")
    sixteen = io.BytesIO()
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(sixteen, format="PNG")
    palette = Image.new("P", (16, 16), 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 200, 10] + [0, 0, 0] * 252)
    gif = io.BytesIO()
    palette.save(gif, format="GIF")
    entries = {"top/cats/a.png": png(), "top/cats/b.jpg": png((10, 10, 10), fmt="JPEG"),
               "top/dogs/grey.png": png((128,), mode="L"), "top/dogs/cmyk.jpg": cmyk.getvalue(),
               "top/dogs/deep.png": sixteen.getvalue(), "top/dogs/pal.gif": gif.getvalue(),
               "top/dogs/notes.txt": b"not an image", "top/dogs/fake.png": b"\x89PNG garbage"}
    ds = store.import_zip("pets", zip_bytes(entries))
    assert ds.classes == ("cats", "dogs") and len(ds) == 6
    assert ds.meta["skipped"] == 2 and ds.meta["converted"] == 4
    assert [ds.label(i) for i in range(len(ds))] == ["cats", "cats", "dogs", "dogs", "dogs", "dogs"]
    for i in range(len(ds)):
        with Image.open(ds.path(i)) as img:
            assert img.mode == "RGB" and img.format == "PNG"
    assert ds.image(ds.files.index("dogs/pal.png")).getpixel((0, 0)) == (10, 200, 10)
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("entries,symlinks,reason", [
    ({"../evil.png": png()}, None, "escapes"),
    ({"a/../../evil.png": png()}, None, "escapes"),
    ({"/abs/evil.png": png()}, None, "escapes"),
    ({"C:/evil.png": png()}, None, "escapes"),
    ({"a\\..\\evil.png": png()}, None, "escapes"),
    ({"ok/a.png": png()}, {"ok/link.png": "/etc/passwd"}, "symbolic link"),
    ({}, None, "empty"),
    ({"notes.txt": b"hello", "more.csv": b"1,2"}, None, "no images"),
])
def test_dangerous_or_useless_zips_are_refused_and_change_nothing(
        data_dir: Path, tmp_path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None,
        reason: str) -> None:
    existing = store.import_zip("existing", zip_bytes({"x/a.png": png(), "y/b.png": png((1, 2, 3))}))
    before, outside = tree(data_dir), tree(tmp_path)
    with pytest.raises(store.DatasetError) as info:
        store.import_zip("upload", zip_bytes(entries, symlinks))
    assert reason in info.value.message and info.value.field in ("params.archive", "path")
    assert tree(data_dir) == before and tree(tmp_path) == outside  # nothing written anywhere, nothing removed
    assert store.open_dataset("existing").fingerprint == existing.fingerprint
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/abs/evil.png").exists()


def test_zip_bombs_are_refused_by_ratio_size_and_count(data_dir: Path) -> None:
    bomb = zip_bytes({"a/zeros.png": b"\0" * 5_000_000}, compression=zipfile.ZIP_DEFLATED)
    assert len(bomb) < 50_000
    with pytest.raises(store.DatasetError, match="zip bomb"):
        store.import_zip("bomb", bomb)
    many = zip_bytes({f"a/{i}.png": png() for i in range(30)})
    with pytest.raises(store.DatasetError, match="entries; the limit is 20"):
        store.import_zip("many", many, store.ZipLimits(entries=20))
    with pytest.raises(store.DatasetError, match="uncompressed"):
        store.import_zip("big", many, store.ZipLimits(total_bytes=1000))
    with pytest.raises(store.DatasetError, match="not a readable zip"):
        store.import_zip("junk", b"PK\x03\x04 not really")
    assert tree(data_dir) == {}


def test_a_name_outside_the_allow_list_or_taken_is_refused(data_dir: Path) -> None:
    store.builtin("taken", 3)
    for bad in ("../up", "Up", "", "a/b", ".hidden", "x" * 65):
        with pytest.raises(store.DatasetError) as info:
            store.builtin(bad, 2)
        assert info.value.field == "params.name"
    with pytest.raises(store.DatasetError, match="exists"):
        store.import_zip("taken", zip_bytes({"a.png": png()}))
    assert len(store.open_dataset("taken")) == 3
    with pytest.raises(store.DatasetError) as info:
        store.open_dataset("missing")
    assert info.value.field == "params.dataset" and "taken" in info.value.message


def test_builtin_dataset_has_labels_and_masks_folder_import_and_remove(data_dir: Path, tmp_path: Path) -> None:
    from convlens.builtin.dataset import CLASSES, render_sample

    ds = store.builtin("shapes", 20, seed=5)
    assert len(ds) == 20 and set(ds.classes) == set(CLASSES)
    i = ds.files.index("ring/0000004.png")
    sample = render_sample(5, 4)
    assert np.array_equal(np.asarray(ds.image(i)), sample.image) and np.array_equal(ds.mask(i), sample.mask)
    folder = tmp_path / "mine"
    (folder / "red").mkdir(parents=True)
    (folder / "red" / "a.png").write_bytes(png())
    (folder / "loose.jpg").write_bytes(png(fmt="JPEG"))
    (folder / "red" / "link.png").symlink_to(folder / "red" / "a.png")
    mine = store.add("mine", folder)
    assert mine.classes == ("red", "unlabelled") and len(mine) == 2 and mine.meta["skipped"] == 1
    assert [d.name for d in store.list_datasets()] == ["mine", "shapes"]
    store.remove_dataset("mine")
    assert [d.name for d in store.list_datasets()] == ["shapes"] and not (data_dir / "mine").exists()


def test_natural_set_comes_from_the_installed_wheels(data_dir: Path) -> None:
    ds = store.natural("natural", crops=2)
    assert {"china", "flower"} <= set(ds.classes)  # scikit-learn's sample photographs
    assert len(ds) == 3 * len(ds.classes)


# ------------------------------------------------------------------------------------------------- codes


def tiny_loaded(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    net = TinyCNN().eval().requires_grad_(False)
    return LoadedModel("tiny", net, tuple("abcde"), Preprocessing(16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                       "random")


def test_code_layer_is_the_input_of_the_classifier() -> None:
    assert tiny_loaded().code_layer == "pool"
    builtin = load_model("builtin")
    assert builtin.code_layer == "code" and builtin.default_layer("code") == "code"


def test_codes_are_cached_and_invalidated_by_dataset_weights_and_layer(data_dir: Path) -> None:
    loaded = tiny_loaded()
    store.builtin("set", 12)
    ds = store.open_dataset("set")
    first = C.dataset_codes(loaded, ds, batch_size=5)
    assert first.vectors.shape == (12, 6) and not first.cached
    x = torch.stack([loaded.preprocessing.normalize(loaded.preprocessing.display(ds.image(i))) for i in range(12)])
    assert torch.equal(C.load_batch(loaded, ds, range(12)), x)  # the uint8 fast path: the same model input
    by_hand = C.codes_of(loaded, x, "pool", dtype=C.reduced_precision(loaded))[0].numpy()
    assert np.allclose(first.vectors, by_hand, atol=1e-5)
    again = C.dataset_codes(loaded, store.open_dataset("set"))
    assert again.cached and again.key == first.key and np.array_equal(again.vectors, first.vectors)
    # the dataset changes: one image rewritten (same name)
    path = ds.path(3)
    Image.new("RGB", (64, 64), (255, 255, 0)).save(path)
    os.utime(path, ns=(1, 1))
    changed = C.dataset_codes(loaded, store.open_dataset("set"))
    assert not changed.cached and changed.key != first.key
    assert not np.allclose(changed.vectors[3], first.vectors[3]) and np.allclose(changed.vectors[4], first.vectors[4])
    # other weights (random ones: the state dict's checksum), another layer
    other = C.dataset_codes(tiny_loaded(seed=1), store.open_dataset("set"))
    assert not other.cached and other.key != changed.key
    layer = C.dataset_codes(loaded, store.open_dataset("set"), "features.1")
    assert not layer.cached and layer.vectors.shape == (12, 4)


def test_a_changed_weights_file_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    monkeypatch.setattr(C, "find_weights", lambda name: weights)
    store.builtin("set", 2)
    ds = store.open_dataset("set")
    loaded = tiny_loaded()
    loaded.weights = "builtin"
    key = C.cache_key(loaded, ds, "pool")
    weights.write_bytes(b"two")
    again = tiny_loaded()
    again.weights = "builtin"
    assert C.cache_key(again, ds, "pool") != key


def test_folded_copy_gives_the_same_codes_for_every_layer() -> None:
    builtin = load_model("builtin")
    x = torch.randn(3, 3, 64, 64)
    folded = C.inference_copy(builtin.net)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0
    for layer in ("features.1", "features.13", "code"):
        with torch.no_grad():
            from convlens.hooks import capture

            with capture(builtin.net, [layer], detach=True) as plain:
                builtin.net(x)
        assert torch.allclose(C.codes_of(builtin, x, layer)[0], C.pooled(plain[layer]), atol=1e-4)
    assert count_hooks(builtin.net) == 0 and count_hooks(folded) == 0


def test_bfloat16_codes_are_float32_and_within_cosine_0_999_of_the_float32_forward(data_dir: Path) -> None:
    builtin = load_model("builtin")
    store.builtin("set", 64)
    x = C.load_batch(builtin, store.open_dataset("set"), range(64))
    exact, logits = C.codes_of(builtin, x, "code")
    fast, fast_logits = C.codes_of(builtin, x, "code", dtype=torch.bfloat16)
    assert fast.dtype == fast_logits.dtype == torch.float32 and not torch.equal(fast, exact)  # bf16 really ran
    assert torch.nn.functional.cosine_similarity(fast, exact, dim=1).min() >= 0.999
    assert (fast_logits.argmax(1) == logits.argmax(1)).float().mean() >= 0.95
    key = C.cache_key(builtin, store.open_dataset("set"), "code", "avg", "float32")
    assert key != C.cache_key(builtin, store.open_dataset("set"), "code", "avg", "torch.bfloat16")


def test_codes_technique_gives_one_vector_per_image_independent_of_the_batch() -> None:
    loaded = load_model("builtin")
    images = [Image.new("RGB", (64, 64), (40 * i, 100, 200 - 30 * i)) for i in range(4)]
    [out] = run(loaded, "codes", [{"images": images}])
    assert len(out.vectors) == 4 and len(out.vectors[0]) == 128 and out.layer == "code"
    [alone] = run(loaded, "codes", [{"images": images[2:3]}])
    assert np.allclose(alone.vectors[0], out.vectors[2], atol=1e-4)
    [spatial] = run(loaded, "codes", [{"images": images}], layer="features.5", params={"pool": "max"})
    assert len(spatial.vectors[0]) == 64 and min(min(v) for v in spatial.vectors) >= 0  # after a ReLU


# ------------------------------------------------------------------------------------------------- projection


def test_pca_finds_the_axis_of_largest_variance() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    x = np.stack([3 * t, 0.1 * rng.normal(size=200), -3 * t + 0.1 * rng.normal(size=200)], axis=1)
    p = pca(x, 2)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.999 and p[:, 0].var() > 100 * p[:, 1].var()


def test_tsne_is_seeded_and_separates_clusters() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 10)), rng.normal(12, 1, (30, 10))]).astype(np.float32)
    a, b = project(x, "tsne", seed=3), project(x, "tsne", seed=3)
    assert a.shape == (60, 2) and np.array_equal(a, b)
    centre = a[:30].mean(0), a[30:].mean(0)
    assert all(np.linalg.norm(p - centre[k // 30]) < np.linalg.norm(p - centre[1 - k // 30]) for k, p in enumerate(a))


def test_exact_knn_matches_brute_force_with_itself_first() -> None:
    from convlens.corpus.search import all_pairs_knn

    x = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    idx, dist = all_pairs_knn(x, 4)
    brute = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert (idx[:, 0] == np.arange(300)).all() and np.allclose(dist[:, 0], 0.0)
    assert np.array_equal(np.sort(idx, 1), np.sort(np.argsort(brute, 1)[:, :4], 1))
    assert np.allclose(dist, np.sort(brute, 1)[:, :4], atol=1e-4) and (np.diff(dist, axis=1) >= 0).all()


def test_umap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(10, 1, (40, 8))]).astype(np.float32)
    a, b = project(x, "umap", seed=1), project(x, "umap", seed=1)
    assert a.shape == (80, 2) and np.array_equal(a, b)
    assert np.linalg.norm(a[:40].mean(0) - a[40:].mean(0)) > 3 * max(a[:40].std(0).max(), a[40:].std(0).max())


def test_points_on_a_grid_snap_to_their_own_cells() -> None:
    side = 5
    rng = np.random.default_rng(0)
    cells = rng.permutation(side * side)
    rows, cols = np.divmod(cells, side)
    points = np.stack([cols + rng.uniform(-0.2, 0.2, len(cells)), (side - 1 - rows) * 1.0], axis=1)
    chosen, assigned = snap_to_grid(points, side)
    assert np.array_equal(assigned[np.argsort(chosen)], cells)
    chosen, assigned = snap_to_grid(rng.normal(size=(100, 2)), 4, seed=2)
    assert len(chosen) == 16 == len(set(assigned)) and len(set(chosen)) == 16


# ------------------------------------------------------------------------------------------------- neighbours


def test_knn_by_hand_on_a_line() -> None:
    database = np.array([[0.0], [10.0], [3.0], [4.0], [-2.0]], dtype=np.float32)
    idx, dist = knn(np.array([[3.4]], dtype=np.float32), database, 3, chunk=2)
    assert idx.tolist() == [[2, 3, 0]] and np.allclose(dist, [[0.4, 0.6, 3.4]], atol=1e-5)
    idx, _ = knn(database[2:3], database, 2, exclude=np.array([2]), chunk=1)
    assert idx.tolist() == [[3, 0]]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_knn_matches_brute_force(metric: str, chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    database = rng.normal(size=(257, 12)).astype(np.float32)
    queries = rng.normal(size=(5, 12)).astype(np.float32)
    idx, dist = knn(queries, database, 6, metric, chunk=chunk)  # type: ignore[arg-type]
    if metric == "cosine":
        unit = database / np.linalg.norm(database, axis=1, keepdims=True)
        full = 1 - (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    else:
        full = np.linalg.norm(queries[:, None] - database[None], axis=2)
    expected = np.argsort(full, axis=1, kind="stable")[:, :6]
    assert np.array_equal(idx, expected)
    assert np.allclose(dist, np.take_along_axis(full, expected, 1), atol=1e-4)


def test_neighbours_technique_finds_the_duplicate_in_both_spaces(data_dir: Path) -> None:
    store.builtin("set", 30)
    ds = store.open_dataset("set")
    query = ds.image(7)
    loaded = load_model("builtin")
    [out] = run(loaded, "neighbours", [{"image": query}], params={"dataset": "set", "k": 3})
    firsts = {item["space"]: item for item in out.items if item["rank"] == 0}
    assert firsts["code"]["index"] == 7 and firsts["pixel"]["index"] == 7
    assert firsts["code"]["distance"] < 0.02 and firsts["pixel"]["distance"] < 1e-3  # float32 cancellation
    assert set(out.images) == {"query", "code", "pixel"}
    [by_index] = run(loaded, "neighbours", [{}], params={"dataset": "set", "query": 7, "k": 3, "space": "code"})
    assert 7 not in [item["index"] for item in by_index.items] and len(by_index.items) == 3
    for params, field_name in (({"dataset": "set"}, "params.query"), ({"dataset": "set", "query": 30}, "params.query"),
                               ({"dataset": "set", "query": 1, "k": 0}, "params.k"),
                               ({"dataset": "nope", "query": 1}, "params.dataset")):
        with pytest.raises(SchemaError) as info:
            run(loaded, "neighbours", [{}], params=params)
        assert info.value.field == field_name


# ------------------------------------------------------------------------------------------------- top patches


class Window(nn.Module):
    """conv 5×5 (stride 1, no padding) → ReLU → conv 3×3 stride 2 → ReLU → pool → linear: a unit (y, x) of
    ``features.2`` sees input rows 2y … 2y+6 and columns 2x … 2x+6 (a 7-pixel window, by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 1, 5, bias=False), nn.ReLU(), nn.Conv2d(1, 2, 3, stride=2,
                                                                                          bias=False), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.fill_(0.0)
            self.features[0].weight[0, 0] = 1.0  # sums the red channel over its window
            self.features[2].weight.fill_(1.0)
            self.features[2].weight[1] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def window_loaded() -> LoadedModel:
    return LoadedModel("window", Window().eval().requires_grad_(False), ("a", "b"),
                       Preprocessing(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "random")


def test_receptive_field_crops_are_the_known_window() -> None:
    [row] = [r for r in layer_catalogue(Window(), 32) if r.name == "features.2"]
    assert row.receptive_field == 7 and row.stride == 2 and row.output_shape == (2, 13, 13)
    image = torch.rand(3, 32, 32)
    for y, x in ((0, 0), (3, 5), (12, 12)):
        assert field_box(row, y, x) == (2 * y, 2 * x, 2 * y + 7, 2 * x + 7)
        assert torch.equal(crop_field(image, row, y, x), image[:, 2 * y:2 * y + 7, 2 * x:2 * x + 7])
    [padded] = [r for r in layer_catalogue(TinyCNN(), 16) if r.name == "features.3"]  # 'same' padding: borders grey
    crop = crop_field(image[:, :16, :16], padded, 0, 0)
    assert crop.shape[-1] == padded.receptive_field and float(crop[:, 0, 0].sub(0.5).abs().max()) == 0


def test_top_patches_find_the_bright_spot_and_crop_its_field(data_dir: Path) -> None:
    folder = data_dir.parent / "spots"
    (folder / "s").mkdir(parents=True)
    spots = {0: (3, 20), 1: (10, 10), 2: (24, 6)}  # image → (row, col) of a 3×3 red spot; the brightest is 2
    for k, (r, c) in spots.items():
        arr = np.zeros((32, 32, 3), dtype=np.uint8)
        arr[r:r + 3, c:c + 3, 0] = 100 + 60 * k
        Image.fromarray(arr).save(folder / "s" / f"{k}.png")
    store.add("spots", folder)
    loaded = window_loaded()
    top = top_units(loaded, store.open_dataset("spots"), "features.2", k=3)
    assert top.images[0, :3].tolist() == [2, 1, 0]  # channel 0 (weights +1): the brightest spot first
    [out] = run(loaded, "top_patches", [{}], layer="features.2", params={"dataset": "spots", "channel": 0, "k": 3})
    first = out.items[0]
    assert first["index"] == 2 and (first["bottom"] - first["top"]) == 7
    r, c = spots[2]
    assert first["top"] <= r and r + 3 <= first["bottom"] and first["left"] <= c and c + 3 <= first["right"]
    assert out.scalars["receptive_field"] == 7 and out.scalars["tile"] == 16  # 7-px fields shown at 16 px
    assert tuple(out.images["grid"].shape[-2:]) == (2 * 16 + 2, 2 * 16 + 2)  # 3 patches: 2 columns, 2 px gaps
    [again] = run(loaded, "top_patches", [{}], layer="features.2", params={"dataset": "spots", "channel": 0, "k": 3})
    assert again.scalars["cached"] == 1.0 and again.items == out.items
    with pytest.raises(SchemaError) as info:
        run(loaded, "top_patches", [{}], layer="features.2", params={"dataset": "spots", "channel": 2})
    assert info.value.field == "params.channel"
    with pytest.raises(SchemaError) as info:
        run(loaded, "top_patches", [{}], layer="classifier", params={"dataset": "spots"})
    assert info.value.field == "layer"


# ------------------------------------------------------------------------------------------------- contract


def test_dataset_techniques_through_the_pipeline_leave_the_model_untouched(data_dir: Path) -> None:
    loaded = load_model("builtin")
    state = {k: v.clone() for k, v in loaded.net.state_dict().items()}
    [made] = run(loaded, "datasets", [{}], params={"action": "builtin", "name": "set", "n": 25})
    assert [item["name"] for item in made.items] == ["set"] and made.items[0]["images"] == 25
    [emb] = run(loaded, "embedding", [{}], params={"dataset": "set", "projection": "pca", "grid": 3})
    assert len(emb.points) == 25 and len(emb.items) == 25 and emb.images["grid"].shape[-1] == 96
    assert {item["label"] for item in emb.items} <= set(loaded.classes) and emb.scalars["codes_cached"] == 0.0
    [emb2] = run(loaded, "embedding", [{}], params={"dataset": "set", "projection": "pca", "grid": 3})
    assert emb2.scalars["codes_cached"] == emb2.scalars["projection_cached"] == 1.0 and emb2.points == emb.points
    [thumbs] = run(loaded, "datasets", [{}], params={"action": "images", "name": "set", "indices": "0,24"})
    assert set(thumbs.images) == {"i0", "i24"} and [item["index"] for item in thumbs.items] == [0, 24]
    for params, field_name in (({"action": "images", "name": "set", "indices": "25"}, "params.indices"),
                               ({"action": "builtin", "name": "../x"}, "params.name"),
                               ({"action": "import", "name": "z", "archive": "%%%"}, "params.archive"),
                               ({"action": "explode"}, "params.action")):
        with pytest.raises(SchemaError) as info:
            run(loaded, "datasets", [{}], params=params)
        assert info.value.field == field_name
    assert all(torch.equal(state[k], v) for k, v in loaded.net.state_dict().items()) and count_hooks(loaded.net) == 0
    assert {s.name for s in registry.endpoints()["dataset"]} == {"datasets", "model_files", "embedding", "neighbours",
                                                                 "top_patches", "fooling_curve"}


def test_a_sprite_sheet_puts_image_start_plus_k_at_row_k_div_64_column_k_mod_64(data_dir: Path) -> None:
    from convlens.techniques.corpus.datasets import sheet

    store.builtin("set", 70)
    ds = store.open_dataset("set")
    out = sheet(ds, 3, 100, 8)  # count clipped to the 67 images from index 3: 2 rows of 64 columns
    assert out.shape == (3, 16, 64 * 8) and 0.0 <= out.min() and out.max() <= 1.0
    for k, (r, c) in ((0, (0, 0)), (63, (0, 63)), (64, (1, 0)), (66, (1, 2))):
        expected = torch.from_numpy(np.asarray(resize_and_crop(ds.image(3 + k), 8, 8))).permute(2, 0, 1) / 255.0
        assert torch.allclose(out[:, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8], expected)
    assert (out[:, 8:, 3 * 8:] == 1.0).all()  # past the last image: white
    for field, call in (("params.start", lambda: sheet(ds, 70, 1, 8)), ("params.count", lambda: sheet(ds, 0, 0, 8)),
                        ("params.size", lambda: sheet(ds, 0, 1, 65))):
        with pytest.raises(SchemaError) as info:
            call()
        assert info.value.field == field
