"""Per-key rate limits and daily quotas: pure bookkeeping over a clock the caller passes.

Rates are token buckets (a key may burst up to `burst` calls, refilled at `rate_per_second`);
quotas count calls, billed tokens and money spent per key and UTC day. Tokens and money hold
during a call: before forwarding, the most the call may cost (its input and its bound on
output, at the route's prices) is reserved from what the key has left, and the call is cut
where the reservation ends; afterwards what was billed is charged and the rest released. So
calls in flight at once can never together overrun what remained. Quotas outlive a restart: the
gateway saves them to `quota.json` every few seconds and on shutdown, so a gateway killed
outright forgets at most those few seconds of counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from formarket.gateway.keys import KeyRecord

__all__ = ["Limits", "Refusal", "Reservation"]

_DAY = 86400
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused before it is forwarded, and when to try again."""

    code: str  # "rate_limit_exceeded" or "insufficient_quota"
    message: str
    retry_after: int


class _Day(msgspec.Struct):
    day: int  # days since the epoch, UTC
    requests: int = 0
    tokens: int = 0
    usd: Decimal = _ZERO  # spent, in the platform's currency


@dataclass(slots=True)
class Reservation:
    """What one call holds of its key's day: `input_tokens` for its input and
    `output_tokens` for its output (None: no bound, the key has no limit on tokens or money)."""

    key_id: str
    day: int
    input_tokens: int
    output_tokens: int | None
    tokens: int
    usd: Decimal


class _Key:
    """One key's running state: its token bucket, its day's counts (the `_Day` saved for it)
    and what calls in progress hold of that day."""

    __slots__ = ("at", "bucket", "held_tokens", "held_usd", "used")

    def __init__(self, bucket: float, used: _Day) -> None:
        self.bucket = bucket
        self.at: float | None = None  # when the bucket was last taken from (None: never)
        self.used = used
        self.held_tokens = 0
        self.held_usd = _ZERO


@dataclass(slots=True)
class Limits:
    """The state of every key's bucket and quota. `now` is monotonic seconds (for rates),
    `wall` seconds since the epoch (quotas are per UTC day)."""

    _days: dict[str, _Day] = field(default_factory=dict)
    _keys: dict[str, _Key] = field(default_factory=dict)
    dirty: bool = False

    def _key(self, key: KeyRecord, day: int) -> _Key:
        """The key's state on `day`; another day than its counts' begins them afresh."""
        state = self._keys.get(key.id)
        if state is None:
            state = self._keys[key.id] = _Key(float(key.burst), self._day(key.id, day))
        elif state.used.day != day:
            state.used = self._day(key.id, day)
        return state

    def admit(self, key: KeyRecord, now: float, wall: float) -> Refusal | None:
        """Take one call from the key's allowance, or say why not."""
        state = self._key(key, int(wall // _DAY))
        used = state.used
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
        at = state.at
        bucket = state.bucket
        if at is not None:
            bucket = min(float(key.burst), bucket + (now - at) * key.rate_per_second)
        state.at = now
        if bucket < 1.0:
            state.bucket = bucket
            wait = (1.0 - bucket) / key.rate_per_second
            return Refusal(
                "rate_limit_exceeded",
                f"rate limit reached: {key.rate_per_second:g} requests per second"
                f" (bursts of {key.burst})",
                max(1, int(wait + 0.999)),
            )
        state.bucket = bucket - 1.0
        used.requests += 1
        self.dirty = True
        return None

    def reserve(
        self,
        key: KeyRecord,
        wall: float,
        *,
        need_in: int,
        want_in: int,
        want_out: int | None,
        price_in: Decimal,
        price_out: Decimal,
        price_call: Decimal = _ZERO,
    ) -> Reservation | Refusal | None:
        """Hold what a call may cost before it is forwarded: at least `need_in` tokens of
        input (up to `want_in`) and up to `want_out` of output, and the call's own price, within
        what the key has left today. None when the key has no limit on tokens or money."""
        tokens_cap = key.tokens_per_day
        usd_cap = key.usd_per_day
        if tokens_cap is None and usd_cap is None:
            return None
        day = int(wall // _DAY)
        state = self._keys.get(key.id)
        if state is None or state.used.day != day:
            state = self._key(key, day)
        used = state.used
        held_tokens = state.held_tokens
        tokens_left = tokens_cap - used.tokens - held_tokens if tokens_cap is not None else None
        usd_left = usd_cap - used.usd - state.held_usd if usd_cap is not None else None
        if (tokens_left is not None and tokens_left < need_in + 1) or (
            usd_left is not None
            and (usd_left <= 0 or usd_left < need_in * price_in + price_out + price_call)
        ):
            spent = (
                f"{tokens_cap} tokens"
                if tokens_left is not None and tokens_left < need_in + 1
                else f"{usd_cap} in spending"
            )
            return Refusal(
                "insufficient_quota",
                f"this key's daily quota of {spent} cannot cover this request"
                f" ({need_in} tokens of input and at least one of output)",
                _DAY - int(wall) % _DAY,
            )
        if want_out is not None and (tokens_left is None or want_in + want_out <= tokens_left):
            usd = want_in * price_in + want_out * price_out + price_call
            if usd_left is None or usd <= usd_left:
                # All the call may cost fits in what is left: the usual case, kept cheap.
                tokens = want_in + want_out
                state.held_tokens = held_tokens + tokens
                state.held_usd += usd
                return Reservation(key.id, day, want_in, want_out, tokens, usd)
        taken_in = want_in
        if tokens_left is not None:
            taken_in = min(taken_in, tokens_left - 1)
        if usd_left is not None and price_in > 0:
            taken_in = min(taken_in, int((usd_left - price_call - price_out) / price_in))
        taken_in = max(taken_in, need_in)
        taken_out = want_out
        if tokens_left is not None:
            room = tokens_left - taken_in
            taken_out = room if taken_out is None else min(taken_out, room)
        if usd_left is not None and price_out > 0:
            room = int((usd_left - price_call - taken_in * price_in) / price_out)
            taken_out = room if taken_out is None else min(taken_out, room)
        tokens = taken_in + (taken_out or 0)
        usd = taken_in * price_in + (taken_out or 0) * price_out + price_call
        state.held_tokens = held_tokens + tokens
        state.held_usd += usd
        return Reservation(key.id, day, taken_in, taken_out, tokens, usd)

    def settle(
        self,
        reservation: Reservation,
        input_tokens: int,
        output_tokens: int,
        price_in: Decimal,
        price_out: Decimal,
        charge: bool,
        price_call: Decimal = _ZERO,
    ) -> None:
        """Release a call's reservation and, when it is charged, count what was billed."""
        state = self._keys[reservation.key_id]
        state.held_tokens -= reservation.tokens
        state.held_usd -= reservation.usd
        if charge:
            # A call that began before midnight and ended after it counts on the new day
            # (the old one is no longer kept).
            used = state.used
            if used.day < reservation.day:
                used = state.used = self._day(reservation.key_id, reservation.day)
            used.tokens += input_tokens + output_tokens
            used.usd += input_tokens * price_in + output_tokens * price_out + price_call
            self.dirty = True

    def charge(self, key: KeyRecord, wall: float, tokens: int) -> None:
        """Count the tokens billed for a call."""
        if tokens:
            self._key(key, int(wall // _DAY)).used.tokens += tokens
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
        for key_id, state in self._keys.items():
            state.used = self._day(key_id, state.used.day)
