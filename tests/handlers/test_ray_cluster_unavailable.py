"""A configured Ray cluster that cannot be reached: the corpus request that needs new codes gets a 503 naming the
cluster, with Retry-After, instead of a 500 or codes silently computed in the worker."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from ts.context import RequestProcessor

from convlens.corpus import codes as C
from convlens.corpus import datasets as store
from tests.handlers.conftest import json_row, make_context


def test_an_unreachable_cluster_is_a_503_naming_it(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.corpus import CorpusHandler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends: nothing listens there
    store.builtin("set", 12, workers=1)
    monkeypatch.setenv(C.RAY_ADDRESS_ENV, address)
    monkeypatch.setenv("CONVLENS_RAY_CONNECT_TIMEOUT", "2")
    handler = CorpusHandler()
    handler.initialize(make_context("dataset", handler_config={"warm_umap": False}))
    context = handler.context
    context.request_ids = {0: "req-0"}
    context.request_processor = [RequestProcessor({})]
    [body] = handler.handle([json_row(params={"method": "embedding", "dataset": "set", "projection": "pca"})], context)
    status, _ = context.get_response_status(0)
    answer = json.loads(body)
    assert status == 503, answer
    assert answer["error"].startswith(f"Ray cluster {address} is unusable: cannot reach")
    assert context.get_response_headers(0).get("Retry-After") == "30"
    assert not list((data_dir / ".cache" / "codes").glob("*.npy"))  # nothing computed in the worker instead
