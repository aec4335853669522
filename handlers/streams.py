"""Long jobs on a continuous-batching endpoint: the worker's request loop never blocks on a job.

With ``continuousBatching: true`` in an endpoint's model config, TorchServe calls the handler again and again:
each call carries the new requests and every request still open (the body only the first time). The handler
starts a long request on the worker's job runner (:mod:`handlers.background`) and, on every later call,

* a streamed request (``"stream": true``) gets its new progress lines as one chunk (``ts_stream_next: true``
  keeps the response open), or its result line, which ends it;
* a request that is not streamed gets no answer until its job ended (its row is left out of the call's
  answer, so TorchServe keeps it open), then the ordinary JSON answer;
* a streamed request that TorchServe no longer sends has lost its client (TorchServe drops a request whose
  connection closed when it passes on a chunk): its job is stopped at its next step — also when that was the
  last open request, so that no call comes at all (:data:`ORPHAN_S`).

A call waits at most :data:`TICK_S` for news of a running job, and answers at once when new requests came,
so a cancel or a status request sent to this endpoint is answered within a tick even while it is busy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handlers import background
from handlers.errors import Outcome

TICK_S = 0.25  # the longest a call waits for news of a running job
# While any request is open TorchServe calls the handler back to back; no call for this long means it dropped
# every open request (their clients left), so their jobs are stopped by their next step.
ORPHAN_S = 5.0
HEARTBEAT_S = 1.0  # an empty chunk this often lets TorchServe notice a client that went away
STREAM_CONTENT_TYPE = "application/x-ndjson"


def is_continuous(context: Any) -> bool:
    config = getattr(context, "model_yaml_config", None) or {}
    return bool(config.get("continuousBatching")) and getattr(context, "request_ids", None) is not None


@dataclass
class Held(Outcome):
    """A row whose answer is its running job's (see :func:`chunk`)."""

    live: background.LiveJob | None = None


def held(live: background.LiveJob) -> Held:
    return Held(200, {}, live=live)


@dataclass
class Chunk:
    data: bytes
    more: bool  # the response stays open after this chunk
    status: int = 200
    content_type: str = STREAM_CONTENT_TYPE
    continues: bool = False  # earlier chunks were sent (TorchServe then ends the stream; else one whole answer)

    @property
    def stop(self) -> bool | None:
        """TorchServe's stopping criterion for this row: False keeps the response open, True ends a stream that
        began earlier, None sends one whole response (a "last chunk" with no first one would have no headers)."""
        return False if self.more else (True if self.continues else None)


def stop_departed(runner: background.JobRunner, request_ids: Sequence[str]) -> None:
    """Stop the streamed jobs whose request TorchServe no longer sends (their client closed the connection)."""
    present = set(request_ids)
    for live in runner.pending():
        if live.request_id is not None and live.request_id not in present and live.stream:
            live.stop("disconnected")
            live.request_id = None


def wait_for_news(lives: Sequence[background.LiveJob], timeout: float = TICK_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(live.done.is_set() or live.lines for live in lives):
            return
        time.sleep(0.01)


def chunk(live: background.LiveJob, last_sent: dict[str, float], opened: set[str]) -> Chunk | None:
    """What a held row answers in this call: new lines, the final answer, an empty heartbeat, or nothing (None:
    the row stays open without an answer). ``last_sent``: when each job's stream last got a chunk (set at its
    start); ``opened``: the jobs whose stream has begun (an error before that keeps its own status)."""
    lines = []
    while live.lines:
        lines.append(live.lines.popleft())
    if live.done.is_set() and live.answer is not None:
        status, body = live.answer
        live.request_id = None
        last_sent.pop(live.job, None)
        continues = live.job in opened
        opened.discard(live.job)
        if live.stream and (continues or lines or status < 400):
            final = {**body, "event": "result"} if status < 400 else body
            return Chunk(b"".join(lines) + (json.dumps(final) + "\n").encode("utf-8"), False, continues=continues)
        return Chunk(json.dumps(body).encode("utf-8"), False, status, "application/json", continues)
    if not live.stream:
        return None
    now = time.monotonic()
    if not lines and now - last_sent.get(live.job, 0.0) < HEARTBEAT_S:
        return None
    last_sent[live.job] = now
    opened.add(live.job)
    return Chunk(b"".join(lines), True)


def progress_line(step: int, total: int, preview: str | None) -> bytes:
    return (json.dumps({"event": "progress", "step": step, "total": total, "preview": preview}) + "\n").encode()
