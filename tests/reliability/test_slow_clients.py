"""Slow and silent clients: the gate drops them after its timeouts (2 s headers/body, 3 s idle here); TorchServe
alone would hold them for ever, and while they wait, valid requests keep being answered."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.reliability.conftest import TEST_LIMITS, Stack, record
from tests.reliability.test_hostile_inputs import GOOD, valid_request_succeeds

SLACK = 2.5  # seconds beyond the configured timeout before we call it held too long


@contextmanager
def connection(port: int, timeout: float) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield s
    finally:
        s.close()


def held_for(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes (or resets) the connection, and what it sent; ``limit`` if never."""
    started = time.monotonic()
    received = b""
    s.settimeout(0.5)
    while time.monotonic() - started < limit:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


def request_head(stack: Stack, length: int) -> bytes:
    return (f"POST /predictions/classify HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {stack.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_silent_connection_is_dropped_after_the_header_timeout(stack: Stack) -> None:
    with connection(stack.gate_port, 5) as s:
        held, _ = held_for(s, 30)
    record("slow_silent", {"held_s": round(held, 2), "timeout_s": TEST_LIMITS.header_timeout})
    assert held <= TEST_LIMITS.header_timeout + SLACK, f"held {held:.1f} s"
    valid_request_succeeds(stack)


def test_headers_dribbled_byte_by_byte_are_dropped(stack: Stack) -> None:
    head = request_head(stack, 10)
    with connection(stack.gate_port, 5) as s:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 20:
                break
        held = time.monotonic() - started
        if not closed:
            extra, _ = held_for(s, 10)
            held += extra
    record("slow_headers", {"held_s": round(held, 2), "timeout_s": TEST_LIMITS.header_timeout})
    assert held <= TEST_LIMITS.header_timeout + SLACK, f"held {held:.1f} s"


def test_body_shorter_than_declared_is_dropped_after_the_body_timeout(stack: Stack) -> None:
    with connection(stack.gate_port, 5) as s:
        s.sendall(request_head(stack, 100_000) + b'{"image": "')
        held, answer = held_for(s, 30)
    record("slow_short_body", {"held_s": round(held, 2), "timeout_s": TEST_LIMITS.body_timeout})
    assert held <= TEST_LIMITS.body_timeout + SLACK, f"held {held:.1f} s"
    assert b"200 OK" not in answer
    valid_request_succeeds(stack)


def test_idle_keep_alive_connection_is_closed(stack: Stack) -> None:
    body = json.dumps({"image": base64.b64encode(GOOD).decode(), "model": "builtin"}).encode()
    with connection(stack.gate_port, 30) as s:
        s.sendall(request_head(stack, len(body)) + body)
        s.settimeout(30)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        # Read the rest of that response, then wait for the server to give up on the idle connection.
        held, _ = held_for(s, 30)
    record("slow_idle_keepalive", {"held_s": round(held, 2), "timeout_s": TEST_LIMITS.idle_timeout})
    assert held <= TEST_LIMITS.idle_timeout + SLACK, f"held {held:.1f} s"


def test_torchserve_alone_holds_a_silent_connection(stack: Stack) -> None:
    """Why the gate exists: TorchServe 0.12 has no read timeout (measured: still open after 8 s)."""
    with connection(stack.info.ports.inference, 5) as s:
        held, _ = held_for(s, 8)
    record("slow_silent_direct_torchserve", {"held_s": round(held, 2), "limit_of_the_probe_s": 8})
    assert held >= 7.5


@pytest.mark.parametrize("clients", [64])
def test_many_slow_clients_do_not_block_valid_requests(stack: Stack, clients: int) -> None:
    sockets = []
    try:
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", stack.gate_port), timeout=5)
            s.sendall(request_head(stack, 1_000_000) + b"{")  # declares 1 MB, sends one byte
            sockets.append(s)
        started = time.monotonic()
        valid_request_succeeds(stack)  # while all of them are still connected
        answered = time.monotonic() - started
    finally:
        for s in sockets:
            s.close()
    record("slow_many_clients", {"clients": clients, "valid_request_s": round(answered, 3)})
    assert answered < 5
