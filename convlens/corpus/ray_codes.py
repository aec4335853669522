"""A dataset's CNN codes computed on a Ray cluster (Ray Data, a pool of model actors), written into the same
cache files as :func:`convlens.corpus.codes.dataset_codes`, which calls :func:`compute` when a cluster is asked
for (``ray=`` / ``$CONVLENS_RAY_ADDRESS`` / ``convlens codes DATASET --ray auto|HOST:PORT``).

How the work flows:

- This process (the *driver*: the api or the CLI, a Ray node with no CPUs of its own in a deployment) makes one
  block per batch of ``(index, relative path)`` rows: paths go through the object store, never pixels.
- ``map_batches`` runs the blocks on a fixed pool of :class:`ConvLensCodes` actors, one per CPU group
  (``$CONVLENS_RAY_CPUS_PER_ACTOR`` CPUs, default 1) or one per GPU. Each actor loads the model itself with
  :func:`convlens.models.load_model` from its name and weights kind and refuses to start unless the weights it
  loaded have the driver's checksum (random weights are sent along: they cannot be rebuilt elsewhere). It reads
  the images from the dataset folder, which must be on storage every node mounts at the same path (decoding on
  as many threads as it has CPUs), and returns ``index, vectors, predicted, confidence`` per block.
- The driver writes the rows in place, in whatever order they arrive, into the memory-mapped cache file and
  reports ``progress(done, total)`` after each block. The forward pass is the in-process one
  (:func:`~convlens.corpus.codes.coded`, in the precision the cache key names), so the codes match.

Cancelling: the progress callback raises (a job's :class:`~convlens.results.Cancelled`); it is called after
every block and every :data:`TICK_S` while none arrives (actors starting, a busy cluster), so a cancel lands
within a second. Ray Data's executor is then shut down (which kills the pool) and the iteration, which runs on
a thread of its own, closed; any actor of the run still alive after :data:`KILL_WAIT_S` is killed by id. The
partial file is deleted by the caller.

A cluster that cannot be used (unreachable, a ``ray://`` address, no CPU or GPU to place an actor on) raises
:class:`ClusterUnavailable`, naming its address: the API answers 503 with ``Retry-After``, the CLI one line.
Ray is imported only here and only when a cluster is asked for.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlens.corpus.codes import RAY_ADDRESS_ENV, Pool, Progress, coded, images_input, weights_digest
from convlens.corpus.datasets import Dataset, read_rgb
from convlens.models import LoadedModel, load_model

CPUS_PER_ACTOR_ENV = "CONVLENS_RAY_CPUS_PER_ACTOR"
CONNECT_TIMEOUT_ENV = "CONVLENS_RAY_CONNECT_TIMEOUT"
ACTOR_PREFIX = "ConvLensCodes"  # every actor class of a run is named ConvLensCodes_<run id>
DEFAULT_PORT = 6379
KILL_WAIT_S = 5.0
TICK_S = 1.0  # progress is reported at least this often, so a cancel lands while nothing arrives
RETRY_AFTER_S = 30

Writer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]

_CONNECT = threading.Lock()


class ClusterError(RuntimeError):
    """Codes on a Ray cluster failed (an actor could not load the model or read an image)."""


class ClusterUnavailable(ClusterError):
    """The Ray cluster that was asked for cannot be used (yet): ``address`` is what was asked for."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"Ray cluster {address} is unusable: {reason}")
        self.address = address
        self.reason = reason


def resolve(address: str) -> str:
    """``auto`` is ``$CONVLENS_RAY_ADDRESS`` when set, else a cluster already running on this machine."""
    if address == "auto":
        return os.environ.get(RAY_ADDRESS_ENV, "").strip() or "auto"
    return address


def host_port(address: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) → (host, port); the port defaults to the GCS's 6379."""
    host, sep, port = address.rpartition(":")
    if not sep or "]" in port:
        host, port = address, str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ClusterUnavailable(address, "expected HOST:PORT (the head's GCS address, e.g. ray-head:6379) or auto")
    return host, int(port)


def _probe(address: str, timeout: float) -> None:
    """Fail fast (``timeout`` seconds) when nothing listens at the GCS address: ray.init would wait much longer."""
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterUnavailable(address, f"cannot reach {host}:{port} ({exc.strerror or exc})") from None


def _same(a: str, b: str) -> bool:
    try:
        (ha, pa), (hb, pb) = host_port(a), host_port(b)
        return pa == pb and socket.gethostbyname(ha) == socket.gethostbyname(hb)
    except (ClusterUnavailable, OSError):
        return a == b


def connect(address: str, timeout: float | None = None) -> str:
    """Join the cluster at ``address`` (once per process; later calls reuse the connection) and return its GCS
    address. Refuses ``ray://`` (Ray Client cannot run Ray Data) and a second, different cluster."""
    if address.startswith("ray://"):
        raise ClusterUnavailable(address, "Ray Client (ray://) cannot run Ray Data (its driver has no core worker); "
                                 "give the head's GCS address HOST:6379 and run this process on a node that joined "
                                 "the cluster (`ray start --address=HOST:6379 --num-cpus=0`)")
    import ray

    timeout = timeout if timeout is not None else float(os.environ.get(CONNECT_TIMEOUT_ENV) or 10)
    with _CONNECT:
        current = str(ray.get_runtime_context().gcs_address) if ray.is_initialized() else None
        if current is not None and (address == "auto" or _same(address, current)):
            return current
        if address != "auto":
            _probe(address, timeout)
        if current is not None:
            raise ClusterUnavailable(address, f"this process is already connected to the Ray cluster at {current}")
        try:
            ray.init(address=address, namespace="convlens", logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # ConnectionError (no cluster), RuntimeError, TimeoutError: all "cannot use it"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if address == "auto":
                reason = (f"no running Ray cluster found on this machine ({reason}); start one (`ray start --head`) "
                          f"or set {RAY_ADDRESS_ENV}=HOST:6379")
            elif os.environ.get("RAY_AUTH_MODE", "").lower() != "token":  # Ray enables it only for local clusters
                reason += ("; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
                           "(RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) in this process's environment")
            raise ClusterUnavailable(address, reason) from None
        return str(ray.get_runtime_context().gcs_address)


def _quiet_data_context() -> None:
    """No progress bars or per-run INFO lines from Ray Data (the caller reports progress); an actor that cannot
    load the model fails the run at once instead of being replaced."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_consecutive_actor_init_deaths = 0
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class ConvLensCodes:
    """A model actor: loads the model once, then maps blocks of ``(index, path)`` rows to their codes."""

    def __init__(self, model: str, weights: str, digest: str, state: dict[str, torch.Tensor] | None, root: str,
                 layer: str, pool: Pool, dtype: str) -> None:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        torch.set_num_threads(max(1, int(cpus)))
        device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
        loaded = load_model(model, "random" if state is not None else "pretrained", device)
        if state is not None:
            loaded.net.load_state_dict(state)
        node = socket.gethostname()
        got = weights_digest(loaded)
        if got != digest:
            raise RuntimeError(f"node {node} loaded different weights for model {model!r} ({weights}: sha256 "
                               f"{got[:12]}…, the api has {digest[:12]}…): every node needs the same weights and "
                               "models folders")
        self.root = Path(root)
        if not self.root.is_dir():
            raise RuntimeError(f"node {node} has no dataset folder {root}: every node must mount the data "
                               "directory at the same path")
        self.loaded, self.layer, self.pool = loaded, layer, pool
        self.dtype = None if dtype == "float32" else getattr(torch, dtype)
        self.readers = ThreadPoolExecutor(max_workers=max(1, int(cpus)))  # decoding releases the GIL

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = list(self.readers.map(read_rgb, [self.root / str(p) for p in batch["path"]]))
        x = images_input(self.loaded, images)
        vectors, predicted, confidence = coded(self.loaded, x.to(self.loaded.device), self.layer, self.pool,
                                               self.dtype)
        return {"index": np.asarray(batch["index"], dtype=np.int64), "vectors": vectors, "predicted": predicted,
                "confidence": confidence}


def pool_size(address: str, blocks: int, actors: int | None = None) -> tuple[int, float, float | None]:
    """(number of actors, CPUs and GPUs of one): one actor per GPU when the cluster has GPUs, else one per
    ``$CONVLENS_RAY_CPUS_PER_ACTOR`` CPUs; at most ``actors`` and one per block."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    per_actor = float(os.environ.get(CPUS_PER_ACTOR_ENV) or 1)
    if gpus >= 1:
        size, actor_cpus, actor_gpus = int(gpus), min(per_actor, cpus), 1.0
    else:
        size, actor_cpus, actor_gpus = int(cpus // per_actor), per_actor, None
    if size < 1:
        raise ClusterUnavailable(address, f"it has {cpus:g} CPUs and {gpus:g} GPUs: no room for a model actor "
                                 f"({per_actor:g} CPUs); start worker nodes (`ray start --address=...`)")
    return max(1, min(size, actors or size, blocks)), actor_cpus, actor_gpus


def run_actors(job_id: str | None = None) -> list[dict[str, Any]]:
    """The ConvLens model actors of this driver's job (or of ``job_id``) that are not dead."""
    import ray
    from ray._private import state

    job = ray.JobID.from_hex(job_id or ray.get_runtime_context().get_job_id())
    return [a for a in state.actors(job_id=job).values()
            if ACTOR_PREFIX in str(a.get("ActorClassName", "")) and a.get("State") != "DEAD"]


def _kill_leftovers(class_name: str) -> None:
    """Wait up to :data:`KILL_WAIT_S` for the run's actors to die with their executor, then kill the rest by id."""
    import ray
    from ray._private.worker import global_worker

    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        alive = [a for a in run_actors() if class_name in str(a.get("ActorClassName", ""))]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for actor in alive:
        try:
            core_worker = global_worker.core_worker  # type: ignore[attr-defined]  # set once connected
            core_worker.kill_actor(ray.ActorID.from_hex(actor["ActorID"]), True)
        except Exception:  # already gone
            pass


def compute(address: str, loaded: LoadedModel, dataset: Dataset, layer: str, pool: Pool, dtype: torch.dtype | None,
            batch_size: int, write: Writer, progress: Progress | None = None, actors: int | None = None) -> None:
    """Every image's code, predicted class and confidence, computed on the cluster at ``address`` and passed to
    ``write(rows, vectors, predicted, confidence)`` block by block (rows in any order)."""
    asked = address
    address = resolve(address)
    connect(address)
    _quiet_data_context()
    import pyarrow as pa
    import ray
    import ray.data

    n = len(dataset)
    starts = range(0, n, batch_size)
    size, actor_cpus, actor_gpus = pool_size(asked, len(starts), actors)
    blocks = [pa.table({"index": np.arange(s, min(s + batch_size, n), dtype=np.int64),
                        "path": list(dataset.files[s:s + batch_size])}) for s in starts]
    state = None
    if loaded.weights == "random":  # not reproducible on another node: the weights themselves travel
        state = {k: v.detach().cpu() for k, v in loaded.net.state_dict().items()}
    class_name = f"{ACTOR_PREFIX}_{secrets.token_hex(4)}"
    actor_class = type(class_name, (ConvLensCodes,), {})
    rows = ray.data.from_arrow(blocks).map_batches(
        actor_class, batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"model": loaded.name, "weights": loaded.weights, "digest": weights_digest(loaded),
                               "state": state, "root": str(Path(dataset.root).resolve()), "layer": layer,
                               "pool": pool, "dtype": str(dtype or torch.float32).removeprefix("torch.")},
        num_cpus=actor_cpus, num_gpus=actor_gpus)
    stop = threading.Event()
    arrived: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
    reader = threading.Thread(target=_read_results, name=class_name, daemon=True,
                              args=(rows.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1),
                                    arrived, stop))
    reader.start()
    done = 0
    try:
        while True:
            try:
                kind, item = arrived.get(timeout=TICK_S)
            except queue.Empty:  # nothing yet (actors starting, the cluster busy): report anyway, so a cancel lands
                if progress is not None:
                    progress(done, n)
                continue
            if kind == "end":
                break
            if kind == "error":
                raise item
            write(item["index"], item["vectors"], item["predicted"], item["confidence"])
            done += len(item["index"])
            if progress is not None:
                progress(done, n)
    except ray.exceptions.RayError as exc:
        if isinstance(exc, (ray.exceptions.RaySystemError, ray.exceptions.GetTimeoutError)):
            raise ClusterUnavailable(asked, _first_line(exc)) from None
        raise ClusterError(f"codes on the Ray cluster {asked} failed: {_first_line(exc)}") from None
    finally:
        stop.set()
        if done < n:  # cancelled or failed: stop the executor now (the reader may be waiting on it), then the actors
            executor = getattr(rows, "_current_executor", None)
            if executor is not None:
                executor.shutdown(force=True)
        reader.join(timeout=KILL_WAIT_S)
        if done < n:
            _kill_leftovers(class_name)


def _read_results(batches: Iterable[dict[str, np.ndarray]], arrived: queue.Queue[tuple[str, Any]],
                  stop: threading.Event) -> None:
    """Iterate Ray Data's results on a thread of their own, handing each block (then "end", or the error) over
    to :func:`compute`; closing the iteration (here, where it runs) shuts the executor and its actors down."""
    iterator = iter(batches)

    def hand_over(kind: str, item: Any) -> bool:
        while not stop.is_set():
            try:
                arrived.put((kind, item), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in iterator:
            if not hand_over("batch", batch):
                return
        hand_over("end", None)
    except BaseException as exc:  # handed to the caller's thread, which raises it
        hand_over("error", exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _first_line(exc: BaseException) -> str:
    """The most specific message of a Ray error: the last ``SomeError: message`` line of its text that Ray did not
    raise itself (Ray wraps the user code's exception with its traceback there), else its first line."""
    texts = [str(exc), str(getattr(exc, "cause", None) or "")]
    for text in texts:
        for line in reversed([line.strip() for line in text.splitlines()]):
            found = re.match(r"^([\w.]*(?:Error|Exception)): (.+)$", line)
            if found and not found.group(1).startswith("ray."):
                return f"{found.group(1).rpartition('.')[2]}: {found.group(2)}"[:300]
    lines = [line.strip() for line in texts[0].splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
