"""Datasets at scale (issue 28): the built-in generator over a pool of processes writes the same bytes whatever
the number of workers, reports progress rising to the total, stops on a cancel without debris; a dataset opens
from its index without a scan, and any change to its files still changes its fingerprint."""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens.corpus import datasets as store


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv(store.DATA_DIR_ENV, str(root))
    return root


def contents(root: Path) -> dict[str, bytes]:
    """Every file of a dataset but its index (which records times), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != store.INDEX}


def same_as_a_scan(ds: store.Dataset) -> None:
    truth = store.scan(ds.root, ds.name)
    assert ds.files == truth.files and ds.classes == truth.classes
    assert np.array_equal(ds.targets, truth.targets) and ds.targets.dtype == np.int64
    assert ds.fingerprint == truth.fingerprint


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name.startswith((store.TMP_PREFIX, store.TRASH_PREFIX)))


def test_one_and_two_workers_write_byte_identical_files_with_progress_rising_to_the_total(data_dir: Path) -> None:
    n = 3 * store.CHUNK + 17  # four chunks, the last one short
    one = store.builtin("one", n, seed=7, workers=1)
    seen: list[tuple[int, int]] = []
    two = store.builtin("two", n, seed=7, workers=2, progress=lambda done, total: seen.append((done, total)))
    assert len(one) == len(two) == n and one.classes == two.classes
    files = contents(one.root)
    assert len(files) == 2 * n + 1  # images, masks, .meta.json
    assert files == contents(two.root)
    steps = [done for done, _ in seen]
    assert {total for _, total in seen} == {n} and steps[-1] == n and steps.count(n) == 1
    assert all(a <= b for a, b in zip(steps, steps[1:], strict=False)) and len(set(steps)) >= 3


def test_the_generator_writes_what_it_always_wrote(data_dir: Path) -> None:
    """The chunks save exactly as the writer of any other image does: an RGB PNG and a mask of 0/255."""
    from convlens.builtin.dataset import CLASSES, render_sample

    ds = store.builtin("few", 12, seed=5)
    assert len(ds) == 12
    for i in (0, 7, 11):
        s = render_sample(5, i)
        k = ds.files.index(f"{CLASSES[s.label]}/{i:07d}.png")
        assert ds.label(k) == CLASSES[s.label]
        assert np.array_equal(np.asarray(ds.image(k)), s.image)
        mask = ds.mask(k)
        assert mask is not None and np.array_equal(mask, s.mask)


def test_a_dataset_opens_from_its_index_without_a_scan(data_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    made = store.builtin("shapes", 40, seed=3)
    folder = tmp_path / "mine"
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (folder / label).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (8, 8), colour).save(folder / label / f"{k}.png")
    added = store.add("mine", folder)
    for ds in (made, added):
        assert (ds.root / store.INDEX).is_file()
        same_as_a_scan(ds)
        for copy in (pickle.loads(pickle.dumps(ds)), pickle.loads(pickle.dumps(store.scan(ds.root)))):
            assert copy.fingerprint == ds.fingerprint and copy.files == ds.files  # sent to another process
    expected = {d.name: (d.files, d.classes, d.targets.tolist(), d.fingerprint) for d in (made, added)}

    def no_scan(root: Path) -> None:
        raise AssertionError(f"{root} was scanned")

    monkeypatch.setattr(store, "_walk", no_scan)
    for name in ("shapes", "mine"):
        ds = store.open_dataset(name)
        assert (ds.files, ds.classes, ds.targets.tolist(), ds.fingerprint) == expected[name]
        assert ds.describe()["images"] == len(ds) and ds.meta["source"]
    assert [d.name for d in store.list_datasets()] == ["mine", "shapes"]


@pytest.mark.parametrize("change", ["add", "rewrite", "remove", "rename", "new label", "root image"])
def test_any_change_to_the_files_changes_the_fingerprint(data_dir: Path, change: str) -> None:
    """Right after creation, with no pause: a folder time recorded in the index had settled, so a change in the
    next instant still moves it; a file rewritten in place (its folder untouched) is seen by the fingerprint."""
    before = store.builtin("set", 30, seed=4)
    fingerprint = before.fingerprint  # worked out when first asked for: before the change
    circle = before.root / "circle"
    first = circle / "0000000.png"
    if change == "add":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(circle / "extra.png")
    elif change == "rewrite":  # same name, in place
        Image.new("RGB", (64, 64), (255, 255, 0)).save(first)
        os.utime(first, ns=(1, 1))
    elif change == "remove":
        first.unlink()
    elif change == "rename":
        first.rename(circle / "0000000b.png")
    elif change == "new label":
        (before.root / "oval").mkdir()
        Image.new("RGB", (64, 64)).save(before.root / "oval" / "a.png")
    else:
        Image.new("RGB", (64, 64)).save(before.root / "loose.png")
    after = store.open_dataset("set")
    assert after.fingerprint != fingerprint
    same_as_a_scan(after)
    again = store.open_dataset("set")  # the index rewritten after the change (or the file check) agrees
    assert again.fingerprint == after.fingerprint and again.files == after.files


def test_a_large_dataset_checked_before_answers_at_once_and_sees_an_in_place_rewrite_one_open_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the threshold, a process that has checked every file of a dataset answers a later open with that
    check's fingerprint and checks again on a background thread; the open after that sees the rewrite."""
    monkeypatch.setattr(store, "RECHECK_IN_BACKGROUND_MIN", 10)
    monkeypatch.setattr(store, "_CHECKED", {})
    monkeypatch.setattr(store, "_RECHECKING", {})
    store.builtin("big", 30, seed=4)
    checked_on: list[str] = []
    check = store._checked_digest
    monkeypatch.setattr(store, "_checked_digest",
                        lambda *a: (checked_on.append(threading.current_thread().name), check(*a))[1])
    first = store.open_dataset("big").fingerprint
    assert checked_on == [threading.current_thread().name]  # nothing known yet: checked before answering
    target = store.open_dataset("big").root / "circle" / "0000000.png"
    Image.new("RGB", (64, 64), (255, 255, 0)).save(target)  # same name, in place: the folder's time stays
    os.utime(target, ns=(1, 1))
    assert store.open_dataset("big").fingerprint == first  # the last check's answer, at once
    deadline = time.monotonic() + 30
    while (store._RECHECKING or len(checked_on) < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checked_on[1].startswith("fingerprint-") and not store._RECHECKING  # the check ran in the background
    after = store.open_dataset("big")
    assert after.fingerprint != first
    same_as_a_scan(after)


def waits_for_a_result(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked in ``Future.result`` (read off its stack)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "result" and "concurrent" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def test_a_worker_checks_large_datasets_at_start_and_a_first_open_waits_for_that_check_instead_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """warm_fingerprints checks each large dataset once on its own thread (small ones are left to their opens);
    an open during that check waits for it and starts none of its own; the open after it answers at once."""
    monkeypatch.setattr(store, "RECHECK_IN_BACKGROUND_MIN", 10)
    monkeypatch.setattr(store, "_CHECKED", {})
    monkeypatch.setattr(store, "_RECHECKING", {})
    big = store.builtin("big", 30, seed=4)
    store.builtin("small", 6, seed=4)
    truth = store.scan(big.root).fingerprint
    release = threading.Event()
    checked_on: list[str] = []
    check = store._checked_digest

    def held_check(*args):  # type: ignore[no-untyped-def]
        checked_on.append(threading.current_thread().name)
        release.wait(30)
        return check(*args)

    monkeypatch.setattr(store, "_checked_digest", held_check)
    warm = store.warm_fingerprints()
    deadline = time.monotonic() + 30
    while not checked_on and time.monotonic() < deadline:
        time.sleep(0.01)
    answers: list[str] = []
    opener = threading.Thread(target=lambda: answers.append(store.open_dataset("big").fingerprint))
    opener.start()
    while not waits_for_a_result(opener) and opener.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waits_for_a_result(opener) and not answers  # waiting for the check under way
    release.set()
    opener.join(30)
    warm.join(30)
    assert answers == [truth]
    assert checked_on == ["warm-fingerprints"]  # one check of "big" in all, none of "small"
    assert store.open_dataset("big").fingerprint == truth  # at once, from that check
    while len(checked_on) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checked_on[1].startswith("fingerprint-")  # and checked again behind the answer


def test_an_unreadable_or_foreign_index_is_ignored_and_rewritten(data_dir: Path) -> None:
    ds = store.builtin("set", 12)
    index = ds.root / store.INDEX
    for junk in (b"", b"PK\x03\x04 not a zip", b"\x93NUMPY junk"):
        index.write_bytes(junk)
        same_as_a_scan(store.open_dataset("set"))
        assert index.stat().st_size > 100  # rewritten by that open
    np.savez(index.open("wb"), header=np.frombuffer(b'{"version": 999}', dtype=np.uint8))
    again = store.open_dataset("set")
    assert again.fingerprint == ds.fingerprint and len(again) == 12


def test_a_dataset_without_an_index_gets_one_on_first_open(data_dir: Path) -> None:
    ds = store.builtin("old", 20)
    (ds.root / store.INDEX).unlink()  # as written before indexes existed
    assert store.open_dataset("old").fingerprint == ds.fingerprint
    assert (ds.root / store.INDEX).is_file()


class Stop(Exception):
    pass


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cancel_mid_way_stops_promptly_leaves_no_temporary_folder_and_keeps_other_datasets(
        data_dir: Path, workers: int) -> None:
    keep = store.builtin("keep", 25, seed=1)
    kept = contents(keep.root)
    stopped_at: list[float] = []

    def cancel_after_the_first_chunk(done: int, total: int) -> None:
        assert any(p.name.startswith(store.TMP_PREFIX) for p in data_dir.iterdir())  # written aside meanwhile
        if done >= store.CHUNK:
            stopped_at.append(time.monotonic())
            raise Stop

    with pytest.raises(Stop):
        store.builtin("big", 40 * store.CHUNK, workers=workers, progress=cancel_after_the_first_chunk)
    assert time.monotonic() - stopped_at[0] < 15.0  # running chunks finish (~1 s each), queued ones are dropped
    assert leftovers(data_dir) == [] and not (data_dir / "big").exists()
    time.sleep(0.5)  # nothing still writing
    assert leftovers(data_dir) == [] and sorted(p.name for p in data_dir.iterdir()) == ["keep"]
    assert contents(keep.root) == kept and store.open_dataset("keep").fingerprint == keep.fingerprint


def test_workers_default_to_the_cores_for_large_sets_and_honour_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(store.WORKERS_ENV, raising=False)
    assert store.default_workers(store.PARALLEL_MIN - 1) == 1
    cores = len(os.sched_getaffinity(0))
    assert store.default_workers(store.MAX_BUILTIN) == cores
    monkeypatch.setenv(store.WORKERS_ENV, "1")
    assert store.default_workers(store.MAX_BUILTIN) == 1
    monkeypatch.setenv(store.WORKERS_ENV, "lots")
    assert store.default_workers(store.MAX_BUILTIN) == cores
    for bad in (0, -1, True, 1.5):
        with pytest.raises(store.DatasetError):
            store.builtin("x", 10, workers=bad)  # type: ignore[arg-type]


def test_a_set_larger_than_the_free_disk_is_refused_before_anything_is_written(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10 * store.BYTES_PER_IMAGE))
    with pytest.raises(store.DatasetError) as info:
        store.builtin("huge", 11)
    assert info.value.field == "params.n" and "GB" in info.value.message
    assert list(data_dir.iterdir()) == []
    assert len(store.builtin("fits", 10)) == 10


def test_a_folder_time_is_recorded_only_once_settled(data_dir: Path, tmp_path: Path) -> None:
    """File-system clocks are coarse: a folder changed in the tick its time was recorded would keep that time. A
    fresh folder's time is taken once it is SETTLE_NS old; one in the future is never trusted (no index)."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    recorded = store._settled_mtime(str(fresh))
    assert recorded == fresh.stat().st_mtime_ns and time.time_ns() - recorded >= max(store.SETTLE_NS, 10_000_000)
    ds = store.builtin("ahead", 12)
    future = time.time_ns() + 10**12
    os.utime(ds.root / "circle", ns=(future, future))
    (ds.root / store.INDEX).unlink()
    assert store._settled_mtime(str(ds.root / "circle")) is None
    same_as_a_scan(store.open_dataset("ahead"))
    assert not (ds.root / store.INDEX).exists()  # scanned each time rather than trusted


def test_the_command_line_makes_lists_and_refuses(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from convlens.cli import main

    handler = signal.getsignal(signal.SIGTERM)
    assert main(["dataset", "builtin", "cli", "--n", "30", "--workers", "1"]) == 0
    assert signal.getsignal(signal.SIGTERM) == handler  # its Ctrl-C-like SIGTERM handling is undone
    assert "images=30 " in capsys.readouterr().out
    assert main(["dataset", "list"]) == 0
    out = capsys.readouterr().out
    assert "cli" in out and "30 images" in out and out.rstrip().endswith("datasets=1")
    assert main(["dataset", "builtin", "zero", "--n", "10", "--workers", "0"]) == 1
    assert "workers" in capsys.readouterr().err and leftovers(data_dir) == []
