"""How many decoded pixels one request may cost, and how many a worker holds at once.

* **Per request**: the images of one request decode to at most ``$CONVLENS_REQUEST_MAX_MPX`` megapixels
  (default 100), counted from their headers before any is decoded (a JPEG counts at the draft size it will
  decode at); more is a 400 naming the image field (a 400, not a 413: the gate answers 413s itself, for bodies).
* **Per worker**: the requests a worker is decoding and answering at once (TorchServe hands a worker a batch of
  up to ``batchSize`` requests) share ``$CONVLENS_WORKER_PIXEL_BUDGET_MPX`` megapixels (default 100). Each
  request reserves its pixels before decoding and releases them once the batch is answered; a request that
  does not fit gets a 503 with ``Retry-After`` and the rest of the batch proceeds.
* After a batch that decoded more than :data:`TRIM_ABOVE_PIXELS`, freed heap is handed back to the OS
  (glibc keeps freed blocks of this size for reuse, so a worker's RSS would otherwise stay at its peak).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

REQUEST_ENV = "CONVLENS_REQUEST_MAX_MPX"
WORKER_ENV = "CONVLENS_WORKER_PIXEL_BUDGET_MPX"
DEFAULT_REQUEST_MPX = 100.0
DEFAULT_WORKER_MPX = 100.0
RETRY_AFTER_S = 2  # a batch is answered in seconds; its pixels are free again then
TRIM_ABOVE_PIXELS = 8_000_000  # ~32 MB of RGBA


class Refused(Exception):
    """A request the pixel limits turn away: ``status`` (400 or 503), a message, the field, response headers."""

    def __init__(self, status: int, message: str, field_name: str | None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field_name
        self.headers = headers or {}


def megapixels_from_env(name: str, default: float) -> int:
    """``$name`` in megapixels (a positive number) as pixels; anything else logs a warning and uses ``default``."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        logger.warning("%s=%r is not a positive number of megapixels; using %g", name, raw, default)
        value = default
    return int(value * 1_000_000)


@dataclass
class PixelBudget:
    """A thread-safe count of the decoded pixels a worker holds, bounded by ``capacity``."""

    capacity: int
    used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self, pixels: int) -> bool:
        with self._lock:
            if self.used + pixels > self.capacity:
                return False
            self.used += pixels
            return True

    def release(self, pixels: int) -> None:
        with self._lock:
            self.used = max(0, self.used - pixels)


_WORKER: PixelBudget | None = None
_WORKER_LOCK = threading.Lock()


def worker_budget() -> PixelBudget:
    """The budget of this worker process (read from the environment on first use)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = PixelBudget(megapixels_from_env(WORKER_ENV, DEFAULT_WORKER_MPX))
        return _WORKER


def request_limit() -> int:
    return megapixels_from_env(REQUEST_ENV, DEFAULT_REQUEST_MPX)


def reserve(sizes: list[tuple[str, int]], budget: PixelBudget, limit: int) -> int:
    """Reserve the pixels of one request's images (``(field, pixels)`` each, in order) or raise :class:`Refused`:
    400 naming the field where the request's total passes ``limit``, 503 when the worker's budget is full."""
    total = 0
    for name, pixels in sizes:
        total += pixels
        if total > limit:
            raise Refused(400, f"the request's images decode to more than {limit / 1e6:g} megapixels "
                               f"(with {name}: {total / 1e6:.1f}); send fewer or smaller images", name)
    if total > budget.capacity:  # would never fit, even on an idle worker
        raise Refused(400, f"the request's images decode to {total / 1e6:.1f} megapixels, more than this worker "
                           f"holds at once ({budget.capacity / 1e6:g}); send fewer or smaller images",
                      sizes[-1][0] if sizes else "image")
    if not budget.reserve(total):
        raise Refused(503, f"this worker is decoding {budget.used / 1e6:.1f} of its {budget.capacity / 1e6:g} "
                           f"megapixels for other requests; retry in {RETRY_AFTER_S} s",
                      None, {"Retry-After": str(RETRY_AFTER_S)})
    return total


def return_memory_to_os() -> bool:
    """glibc's ``malloc_trim(0)``: give freed heap pages back to the OS. False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
