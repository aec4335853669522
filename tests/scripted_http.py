"""A local HTTP server answering each POST with the next (status, body) of a script, for the client's tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of ``script`` (the last one again once it runs out) and
    records (path, JSON body) of every request in ``seen``."""

    script: list[tuple[int, dict[str, Any]]] = []
    seen: list[tuple[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 — http.server's name
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Scripted.seen.append((self.path, json.loads(raw) if raw else None))
        status, body = Scripted.script[min(len(Scripted.seen) - 1, len(Scripted.script) - 1)]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving() -> Iterator[str]:
    """The server's URL while it runs; ``Scripted.seen`` starts empty."""
    Scripted.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
