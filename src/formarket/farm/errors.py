"""Errors of the farm's queue: which failures a task retries and which it reports.

    FormarketError
    └── TransientError      a hiccup that may pass: the broker, a host or the network did not
        │                   answer, or another worker holds what this task needs; retried
        └── BuildBusy       another worker is building this very build id right now

A task retries a TransientError (and the standard library's ConnectionError and TimeoutError,
which is how sockets report hiccups) with exponential backoff; every other error fails the task
at once, with its message and hint, because running it again would fail the same way.
"""

from __future__ import annotations

from formarket.errors import FormarketError

__all__ = ["BuildBusy", "TransientError", "backoff", "is_transient"]

BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0


class TransientError(FormarketError):
    """A failure that may pass if the same thing is tried again a little later."""


class BuildBusy(TransientError):
    """Another worker holds the lock of this build id."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError | ConnectionError | TimeoutError)


def backoff(retries: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> float:
    """Seconds to wait before try number `retries + 1`: first, 2*first, 4*first... up to cap."""
    return min(cap, first * 2.0 ** min(max(retries, 0), 32))
