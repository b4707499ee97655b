"""Per-key rate limits and daily quotas: pure bookkeeping over a clock the caller passes.

Rates are token buckets (a key may burst up to `burst` calls, refilled at `rate_per_second`);
quotas count calls and billed tokens per key and UTC day. Quotas outlive a restart: the
gateway saves them to `quota.json` every few seconds and on shutdown, so a gateway killed
outright forgets at most those few seconds of counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from formarket.gateway.keys import KeyRecord

__all__ = ["Limits", "Refusal"]

_DAY = 86400


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused before it is forwarded, and when to try again."""

    code: str  # "rate_limit_exceeded" or "insufficient_quota"
    message: str
    retry_after: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class _Day(msgspec.Struct):
    day: int  # days since the epoch, UTC
    requests: int = 0
    tokens: int = 0


@dataclass(slots=True)
class Limits:
    """The state of every key's bucket and quota. `now` is monotonic seconds (for rates),
    `wall` seconds since the epoch (quotas are per UTC day)."""

    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _days: dict[str, _Day] = field(default_factory=dict)
    dirty: bool = False

    def admit(self, key: KeyRecord, now: float, wall: float) -> Refusal | None:
        """Take one call from the key's allowance, or say why not."""
        used = self._day(key.id, int(wall // _DAY))
        if key.requests_per_day is not None and used.requests >= key.requests_per_day:
            return Refusal(
                "insufficient_quota",
                f"this key's quota of {key.requests_per_day} requests per day is used up",
                _DAY - int(wall) % _DAY,
            )
        if key.tokens_per_day is not None and used.tokens >= key.tokens_per_day:
            return Refusal(
                "insufficient_quota",
                f"this key's quota of {key.tokens_per_day} tokens per day is used up",
                _DAY - int(wall) % _DAY,
            )
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(float(key.burst), now)
        bucket.tokens = min(
            float(key.burst), bucket.tokens + (now - bucket.at) * key.rate_per_second
        )
        bucket.at = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / key.rate_per_second
            return Refusal(
                "rate_limit_exceeded",
                f"rate limit reached: {key.rate_per_second:g} requests per second"
                f" (bursts of {key.burst})",
                max(1, int(wait + 0.999)),
            )
        bucket.tokens -= 1.0
        used.requests += 1
        self.dirty = True
        return None

    def charge(self, key: KeyRecord, wall: float, tokens: int) -> None:
        """Count the tokens billed for a call."""
        if tokens:
            self._day(key.id, int(wall // _DAY)).tokens += tokens
            self.dirty = True

    def _day(self, key_id: str, day: int) -> _Day:
        used = self._days.get(key_id)
        if used is None or used.day != day:
            used = self._days[key_id] = _Day(day)
        return used

    def dump(self) -> bytes:
        self.dirty = False
        return msgspec.json.encode(self._days)

    def load(self, data: bytes) -> None:
        """Quotas saved by an earlier run; anything unreadable is forgotten, not fatal."""
        try:
            self._days = msgspec.json.decode(data, type=dict[str, _Day])
        except msgspec.DecodeError:
            self._days = {}
