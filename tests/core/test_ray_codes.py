"""A dataset's codes on Ray: a local 2-CPU cluster this module starts (and always shuts down) gives the same
cache key, the same files and the same codes as the in-process path, reports progress up to the total, leaves
no model actor alive after a cancel, and refuses clearly (``ray://``, an unreachable address, other weights)
without ever computing in process instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from convlens.cli import main
from convlens.corpus import codes as C
from convlens.corpus import datasets as store
from convlens.corpus import ray_codes as R
from convlens.corpus.datasets import Dataset
from convlens.models import LoadedModel, load_model
from convlens.results import Cancelled

ROOT = Path(__file__).resolve().parents[2]
N, BATCH = 64, 8  # 8 blocks over 2 actors


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    """A tiny built-in dataset in a private data directory; no cluster configured by the environment."""
    patch = pytest.MonkeyPatch()
    patch.setenv(store.DATA_DIR_ENV, str(tmp_path_factory.mktemp("ray-data")))
    patch.delenv(C.RAY_ADDRESS_ENV, raising=False)
    patch.delenv("RAY_ADDRESS", raising=False)
    try:
        yield store.builtin("tiny", N, workers=1)
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("builtin")


@pytest.fixture(scope="module")
def cluster(data: Dataset) -> Iterator[str]:
    """A local Ray cluster of 2 CPUs and a 300 MB object store, shut down after the module (also on failure).
    (Ray's default token authentication: its token is ~/.ray/auth_token, made by Ray on first use.)"""
    try:
        ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False,
                 logging_level="WARNING")  # "local": a new cluster even if another one runs on this machine
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def cache_files() -> list[str]:
    return sorted(p.name for p in C.cache_dir("codes").iterdir())


def fresh_cache() -> None:
    shutil.rmtree(C.cache_dir("codes"), ignore_errors=True)


def in_process(loaded: LoadedModel, data: Dataset) -> tuple[C.Codes, list[str]]:
    """The reference: codes computed in this process (copied out of the cache, which is then emptied)."""
    fresh_cache()
    codes = C.dataset_codes(loaded, data, batch_size=BATCH)
    files = cache_files()
    copy = C.Codes(np.array(codes.vectors), codes.predicted.copy(), codes.confidence.copy(), codes.layer, codes.key,
                   codes.cached, codes.seconds)
    fresh_cache()
    return copy, files


def assert_same_codes(got: C.Codes, ref: C.Codes) -> None:
    a, b = np.asarray(got.vectors, dtype=np.float64), np.asarray(ref.vectors, dtype=np.float64)
    assert a.shape == b.shape
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.9999, cosine.min()
    assert np.array_equal(got.predicted, ref.predicted)
    np.testing.assert_allclose(got.confidence, ref.confidence, atol=1e-3)


def alive_actors(timeout: float = 10.0) -> list[dict[str, object]]:
    """This job's ConvLens actors still alive once a finished or cancelled run had ``timeout`` s to end them."""
    deadline = time.monotonic() + timeout
    while (alive := R.run_actors()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ without a cluster (cheap, run first)


def test_auto_without_a_running_cluster_is_an_error_not_a_new_cluster(data: Dataset, tmp_path: Path) -> None:
    """In a fresh process that sees no cluster (its own Ray temp dir): ``auto`` refuses instead of starting one."""
    code = ("from convlens.corpus import ray_codes as R\n"
            "try:\n    R.connect(R.resolve('auto'))\nexcept R.ClusterUnavailable as e:\n    print('REFUSED', e)\n"
            "import ray\nprint('INITIALIZED' if ray.is_initialized() else 'NOT-INITIALIZED')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", C.RAY_ADDRESS_ENV)}
    env["RAY_TMPDIR"] = str(tmp_path)  # where Ray looks for a running cluster: not another test's or user's
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines[-2].startswith("REFUSED Ray cluster auto is unusable: no running Ray cluster"), out.stdout + out.stderr
    assert "ray start --head" in lines[-2] and lines[-1] == "NOT-INITIALIZED"


def test_ray_client_addresses_are_refused_saying_why(model: LoadedModel, data: Dataset) -> None:
    fresh_cache()
    with pytest.raises(R.ClusterUnavailable, match=r"ray://head:10001 is unusable: Ray Client .* HOST:6379"):
        C.dataset_codes(model, data, batch_size=BATCH, ray="ray://head:10001")
    assert cache_files() == []  # nothing computed in process instead


def test_an_unreachable_cluster_fails_fast_naming_its_address(model: LoadedModel, data: Dataset,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv(R.CONNECT_TIMEOUT_ENV, "2")
    fresh_cache()
    started = time.monotonic()
    with pytest.raises(R.ClusterUnavailable, match=rf"Ray cluster {address} is unusable: cannot reach") as caught:
        C.dataset_codes(model, data, batch_size=BATCH, ray=address)
    assert caught.value.address == address and time.monotonic() - started < 5
    monkeypatch.setenv(C.RAY_ADDRESS_ENV, address)  # the same through the environment, and from the CLI
    with pytest.raises(R.ClusterUnavailable, match=address):
        C.dataset_codes(model, data, batch_size=BATCH)
    assert cache_files() == []
    assert main(["codes", "tiny", "--batch-size", str(BATCH)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"convlens: error: Ray cluster {address} is unusable") and "Traceback" not in "".join(err)


def test_addresses_parse_and_auto_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert R.host_port("ray-head:6379") == ("ray-head", 6379)
    assert R.host_port("10.0.0.5") == ("10.0.0.5", 6379)
    assert R.host_port("[::1]:7000") == ("::1", 7000)
    with pytest.raises(R.ClusterUnavailable, match="HOST:PORT"):
        R.host_port("head:port")
    monkeypatch.delenv(C.RAY_ADDRESS_ENV, raising=False)
    assert R.resolve("auto") == "auto" and C.cluster_address(None) is None
    monkeypatch.setenv(C.RAY_ADDRESS_ENV, "ray-head:6379")
    assert R.resolve("auto") == "ray-head:6379" and R.resolve("h:1") == "h:1"
    assert C.cluster_address(None) == "ray-head:6379" and C.cluster_address("auto") == "auto"


# ------------------------------------------------------------------ on the local cluster


def test_cluster_codes_match_in_process_codes_in_the_same_cache(cluster: str, model: LoadedModel,
                                                                data: Dataset) -> None:
    ref, ref_files = in_process(model, data)
    seen: list[tuple[int, int]] = []
    codes = C.dataset_codes(model, data, batch_size=BATCH, ray=cluster, progress=lambda d, t: seen.append((d, t)))
    assert not codes.cached and codes.key == ref.key and cache_files() == ref_files
    assert_same_codes(codes, ref)
    done = [d for d, _ in seen]  # one report per block, and one a second while none arrives (actors starting)
    assert {t for _, t in seen} == {N} and done[-1] == N and len(set(done) - {0}) == N // BATCH
    assert all(b >= a for a, b in zip(done, done[1:], strict=False))  # monotone
    again = C.dataset_codes(model, data, batch_size=BATCH)  # the in-process path reads what the cluster wrote
    assert again.cached and again.key == ref.key and np.array_equal(np.asarray(again.vectors), codes.vectors)
    assert alive_actors() == []


def test_the_cli_computes_on_a_cluster_it_joins_from_another_process(cluster: str, model: LoadedModel,
                                                                      data: Dataset) -> None:
    """`convlens codes DATASET --ray HOST:PORT` in a fresh process (a driver of its own, ray.init(address=...))."""
    ref, ref_files = in_process(model, data)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", C.RAY_ADDRESS_ENV)}
    env["RAY_AUTH_MODE"] = "token"  # the test cluster's token (Ray's default file): explicit addresses need this
    out = subprocess.run([sys.executable, "-m", "convlens", "codes", "tiny", "--batch-size", str(BATCH), "--ray",
                          cluster, "--ray-actors", "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == f"model=builtin layer=code cached=False cache={ref.key} ray={cluster}"
    assert lines[-1].startswith(f"codes={N} dim=128 ") and cache_files() == ref_files
    assert_same_codes(C.dataset_codes(model, data, batch_size=BATCH), ref)  # read from the cluster's files


def test_random_weights_travel_and_the_environment_selects_the_cluster(cluster: str, data: Dataset,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_model("builtin", "random")  # unseeded: another process could not rebuild these weights
    ref, ref_files = in_process(loaded, data)
    monkeypatch.setenv(C.RAY_ADDRESS_ENV, cluster)
    codes = C.dataset_codes(loaded, data, batch_size=BATCH, ray_actors=1)
    assert not codes.cached and codes.key == ref.key and cache_files() == ref_files
    assert_same_codes(codes, ref)
    assert C.dataset_codes(loaded, data, batch_size=BATCH, ray="auto").cached  # auto: the configured cluster


def test_a_registered_model_is_loaded_by_name_on_the_actors(cluster: str, data: Dataset) -> None:
    """``digits`` (a model folder shipped with the package, not a built-in architecture) loads on every actor."""
    loaded = load_model("digits")
    assert loaded.weights == "registered"
    ref, ref_files = in_process(loaded, data)
    codes = C.dataset_codes(loaded, data, batch_size=BATCH, ray=cluster)
    assert not codes.cached and codes.key == ref.key and cache_files() == ref_files
    assert_same_codes(codes, ref)


def test_cancelling_stops_the_run_and_kills_its_actors(cluster: str, model: LoadedModel, data: Dataset) -> None:
    fresh_cache()
    during: list[int] = []

    def cancel(done: int, total: int) -> None:
        if done == 0:
            return  # actors still starting: see the next test
        during.append(len(R.run_actors()))
        raise Cancelled("job-1")

    started = time.monotonic()
    with pytest.raises(Cancelled):
        C.dataset_codes(model, data, batch_size=BATCH, ray=cluster, progress=cancel)
    assert during and during[0] >= 1  # the check below can see the run's actors
    assert R.run_actors() == []  # dead before dataset_codes returned
    assert cache_files() == []  # no partial cache entry, no temporary file
    assert time.monotonic() - started < 120


def test_a_cancel_while_the_actors_start_stops_the_run_too(cluster: str, model: LoadedModel, data: Dataset) -> None:
    """No block has arrived yet (progress is still reported every second): the executor and actors go anyway."""
    fresh_cache()
    calls: list[int] = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise Cancelled("job-2")

    with pytest.raises(Cancelled):
        C.dataset_codes(model, data, batch_size=BATCH, ray=cluster, progress=cancel)
    assert calls == [0, 0]
    assert R.run_actors() == [] and cache_files() == []


def test_a_node_with_other_weights_is_refused(cluster: str, data: Dataset) -> None:
    loaded = load_model("builtin")
    object.__setattr__(loaded, "_convlens_weights_digest", "0" * 64)  # as if the api had another weights file
    fresh_cache()
    with pytest.raises(R.ClusterError, match="loaded different weights for model 'builtin'"):
        C.dataset_codes(loaded, data, batch_size=BATCH, ray=cluster)
    assert cache_files() == [] and alive_actors() == []


def test_an_image_an_actor_cannot_read_fails_the_run_naming_it(cluster: str, model: LoadedModel,
                                                              data: Dataset) -> None:
    root = data.root.parent / "broken"
    shutil.copytree(data.root, root)
    try:
        (root / data.files[-1]).write_bytes(b"not an image")  # read by an actor, in the last block
        fresh_cache()
        with pytest.raises(R.ClusterError, match=rf"failed: .*cannot identify image file .*{data.files[-1]}"):
            C.dataset_codes(model, store.open_dataset("broken"), batch_size=BATCH, ray=cluster)
        assert cache_files() == [] and alive_actors() == []
    finally:
        shutil.rmtree(root)


def test_actors_that_outlive_their_executor_are_killed_by_id(cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback after a cancel: a run's actors still alive once the wait is over are killed."""
    cls = ray.remote(num_cpus=0)(type(f"{R.ACTOR_PREFIX}_straggler", (), {"ping": lambda self: "pong"}))
    other = ray.remote(num_cpus=0)(type("SomeoneElsesActor", (), {"ping": lambda self: "pong"})).remote()
    actor = cls.remote()
    assert ray.get(actor.ping.remote()) == "pong" and ray.get(other.ping.remote()) == "pong"
    assert [a["ActorClassName"] for a in R.run_actors()] == [f"{R.ACTOR_PREFIX}_straggler"]
    monkeypatch.setattr(R, "KILL_WAIT_S", 0.0)
    R._kill_leftovers(f"{R.ACTOR_PREFIX}_straggler")
    assert alive_actors() == []
    assert ray.get(other.ping.remote()) == "pong"  # only the run's own actors
    ray.kill(other)


def test_the_api_container_joins_a_configured_cluster_with_no_cpus() -> None:
    """deploy/api/entrypoint.py: what it runs when CONVLENS_RAY_ADDRESS is set (nothing for auto or ray://)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("convlens_entrypoint_ray", ROOT / "deploy" / "api" / "entrypoint.py")
    assert spec and spec.loader
    entrypoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entrypoint)
    command = entrypoint.ray_join_command(" ray-head:6379 ")
    assert command[:3] == ["ray", "start", "--address=ray-head:6379"]
    assert "--num-cpus=0" in command and "--num-gpus=0" in command
    assert [entrypoint.ray_join_command(a) for a in ("", "auto", "ray://head:10001")] == [None, None, None]
