"""A circuit breaker for the cloud: after ``failures`` failures in a row it opens and the server
stops calling the cloud (answers come from the edge, marked degraded) for ``reset_s`` seconds;
then one request is let through as a probe (half-open). The probe's success closes the breaker,
its failure opens it for another ``reset_s``.

Thread-safe: it is consulted from the event loop and from worker threads.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, failures: int = 3, reset_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if failures < 1 or reset_s < 0:
            raise ValueError("breaker needs failures >= 1 and reset_s >= 0")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._count = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened_total = 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """True if the cloud may be called now. In half-open state only one caller (the probe)
        gets True until it reports back."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
                self._state = HALF_OPEN
                self._probing = False
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state, self._count, self._probing = CLOSED, 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._state == HALF_OPEN or self._count >= self.failures:
                if self._state != OPEN:
                    self.opened_total += 1
                self._state, self._opened_at, self._probing = OPEN, self._clock(), False

    def release_probe(self) -> None:
        """The probe ended without telling anything about the cloud (e.g. the client left)."""
        with self._lock:
            self._probing = False
