"""The live API and dashboard that the browser tests drive, started once for all of them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from convlens.corpus import datasets as store
from dashboard import launch
from serve import server

CHROMIUM = os.environ.get("CONVLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LIVE_URL_ENV = "CONVLENS_LIVE_DASHBOARD"  # a dashboard already running (e.g. `make run`'s) instead of a new one


# package scope: the server goes when the browser tests are done (the integration tests start servers of their own;
# two TorchServe fleets at once exhaust a 24 GiB machine)
@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get(LIVE_URL_ENV):
        yield os.environ[LIVE_URL_ENV]
        return
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: `make test` installs Debian's chromium"
    run_dir = tmp_path_factory.mktemp("live")
    data_dir = run_dir / "datasets"
    with pytest.MonkeyPatch.context() as mp:  # a small built-in dataset for the corpus pages
        mp.setenv(store.DATA_DIR_ENV, str(data_dir))
        store.builtin("shapes", 300)
    info = server.start(run_dir, server.Ports.free(), env={store.DATA_DIR_ENV: str(data_dir)})
    try:
        dash = launch.start(free_port(), info.inference_url, info.key_file, run_dir)
        try:
            yield dash.url
        finally:
            launch.stop(run_dir)
    finally:
        server.stop(run_dir)
