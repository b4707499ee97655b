"""Rate limits of the control plane: a token bucket per account (and per client address for
the sign-in route, before there is an account). In memory: one control-plane process keeps
its own, so N processes let an account through N times the rate; the gateway's meter, not
this, is what protects money."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, when)

    def take(self, who: str) -> float:
        """0 when `who` may make a request now, else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, when = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            if tokens >= 1:
                if len(self._buckets) >= _MAX_BUCKETS and who not in self._buckets:
                    self._buckets.clear()
                self._buckets[who] = (tokens - 1, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
