"""Usage events as bytes: one CloudEvents 1.0 JSON document per metered fact.

The shape is `formarket.schemas.usage.UsageEvent` (the contract the royalties read); events are
built here as plain dicts in that field order and encoded once with msgspec, because the
gateway writes one per call and validating a pydantic model on the hot path would cost more
than the rest of the call. tests/usage/test_events.py holds every event built here to the
contract.

    call_event            a call through the gateway
    CallEvents            call_event for one deployment's calls, its constant parts encoded once
    instance_hours        "deployment X ran from t0 to t1" -> one event per UTC hour it ran
    EventIds              ids unique per source: a random boot prefix and a counter
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from formarket.schemas.usage import CALL, INSTANCE_HOURS

__all__ = [
    "CallEvents",
    "Cut",
    "EventIds",
    "Outcome",
    "Served",
    "call_event",
    "event_time",
    "instance_hours",
    "wall_time",
]

Outcome = Literal["ok", "error", "rejected"]
# Why the gateway cut a call short: text past max_tokens, choices past n, the key's budget
# spent, the response size, the call's duration, or the deployment idle too long.
Cut = Literal["max_tokens", "choices", "budget", "size", "duration", "idle"]
_ENCODE = msgspec.json.Encoder().encode
_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Served:
    """Who served a call and for whom: the deployment, its listings and the paying account."""

    deployment: str
    account: str
    agent: tuple[str, str] | None
    model: tuple[str, str] | None

    def __post_init__(self) -> None:
        if self.agent is None and self.model is None:
            raise ValueError(f"deployment {self.deployment} serves neither an agent nor a model")


class EventIds:
    """`<boot>-<n>`: the boot prefix (milliseconds since the epoch and 24 random bits, in hex)
    makes ids unique across restarts of one source; the counter makes them cheap and, since
    consecutive ids share their prefix, compress to a byte or two in a usage file."""

    def __init__(self, boot: str | None = None) -> None:
        self.boot = boot or f"{int(time.time() * 1000):x}{secrets.token_hex(3)}"
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self.boot}-{self._next}"


_second: list[tuple[int, str]] = [(-1, "")]


def event_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the millisecond: finer is noise for billing and costs bytes. The
    text of the current second is kept: formatting a date costs more than the rest of a
    call's bookkeeping."""
    utc = moment.astimezone(UTC)
    second = int(utc.timestamp())
    seen, text = _second[0]
    if seen != second:
        text = f"{utc:%Y-%m-%dT%H:%M:%S}"
        _second[0] = (second, text)
    return f"{text}.{utc.microsecond // 1000:03d}Z"


_wall_second: list[tuple[int, str]] = [(-1, "")]


def wall_time(seconds: float) -> str:
    """`event_time(datetime.fromtimestamp(seconds, UTC))` for `seconds` after the epoch,
    without making the datetime: the microseconds are rounded as `fromtimestamp` rounds them
    (half to even, carried into the second)."""
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    second = int(whole)
    seen, text = _wall_second[0]
    if seen != second:
        text = f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}"
        _wall_second[0] = (second, text)
    return f"{text}.{micro // 1000:03d}Z"


def _ref(ref: tuple[str, str] | None) -> dict[str, str] | None:
    return None if ref is None else {"id": ref[0], "version": ref[1]}


def _event(
    kind: str,
    event_id: str,
    source: str,
    time_text: str,
    served: Served,
    data: dict[str, object],
) -> bytes:
    body: dict[str, object] = {
        "account": served.account,
        "agent": _ref(served.agent),
        "model": _ref(served.model),
    }
    body.update(data)
    return _ENCODE(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": kind,
            "time": time_text,
            "subject": served.deployment,
            "datacontenttype": "application/json",
            "data": body,
        }
    )


def call_event(
    *,
    event_id: str,
    source: str,
    moment: datetime,
    served: Served,
    input_tokens: int,
    output_tokens: int,
    duration_ms: int,
    outcome: Outcome,
    tokens_source: str,
    cut: Cut | None = None,
    parent: str | None = None,
) -> bytes:
    """One call, as the JSON of a `dev.formarket.usage.call` event (no trailing newline).
    `cut` says why the gateway cut the call short, `parent` the call (of an agent) that
    made it; both are left out when unset, as events written before them are."""
    data = _call_data(input_tokens, output_tokens, duration_ms, outcome, tokens_source)
    if cut is not None:
        data["cut"] = cut
    if parent is not None:
        data["parent"] = parent
    return _event(CALL, event_id, source, event_time(moment), served, data)


def _call_data(
    input_tokens: object,
    output_tokens: object,
    duration_ms: object,
    outcome: object,
    tokens_source: object,
) -> dict[str, object]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "requests": 1,
        "duration_ms": duration_ms,
        "outcome": outcome,
        "tokens_source": tokens_source,
        "instance_seconds": 0,
    }


class CallEvents:
    """`call_event` for the calls one deployment serves, from one source, as one formatting
    of bytes: the gateway writes an event per call, and building and encoding the whole
    document each time costs more than the rest of the call's bookkeeping. The constant parts
    are cut from an event `call_event`'s own encoding made with markers in the varying
    fields, so both always agree (tests/usage/test_events.py holds them to it)."""

    __slots__ = ("_format",)

    def __init__(self, source: str, served: Served) -> None:
        marks = [chr(n) for n in range(1, 8)]  # encoded as "\u0001"... in the JSON
        sample = _event(CALL, marks[0], source, marks[1], served, _call_data(*marks[2:])).replace(
            b"%", b"%%"
        )
        fields = (b"%s", b'"%s"', b"%d", b"%d", b"%d", b'"%s"', b'"%s"')
        pieces: list[bytes] = []
        for n, field in enumerate(fields, 1):
            before, found, sample = sample.partition(b'"\\u%04x"' % n)
            if not found:
                raise AssertionError(f"field {n} is missing from the call event's encoding")
            pieces += (before, field)
        pieces.append(sample)
        self._format = b"".join(pieces)

    def __call__(
        self,
        *,
        event_id: str,
        wall: float,
        input_tokens: int,
        output_tokens: int,
        duration_ms: int,
        outcome: Outcome,
        tokens_source: str,
        cut: Cut | None = None,
        parent: str | None = None,
    ) -> bytes:
        """The event of one call at `wall` (seconds since the epoch)."""
        event = self._format % (
            _ENCODE(event_id),
            wall_time(wall).encode(),
            input_tokens,
            output_tokens,
            duration_ms,
            outcome.encode(),
            tokens_source.encode(),
        )
        if cut is None and parent is None:
            return event
        # The optional fields close the data object, in the order `call_event` writes them.
        extra = b"".join(
            (
                b',"cut":' + _ENCODE(cut) if cut is not None else b"",
                b',"parent":' + _ENCODE(parent) if parent is not None else b"",
            )
        )
        return event[:-2] + extra + b"}}"


def _hours(start: int, end: int) -> Iterator[tuple[int, int]]:
    """[start, end) in whole seconds, cut at every UTC hour."""
    at = start
    while at < end:
        cut = min(end, (at // _HOUR + 1) * _HOUR)
        yield at, cut
        at = cut


def instance_hours(
    *,
    source: str,
    served: Served,
    start: datetime,
    end: datetime,
) -> list[bytes]:
    """The running time of a deployment from `start` to `end`, as one
    `dev.formarket.usage.instance-hours` event per UTC hour it touched.

    Cutting at hours keeps every event inside one royalty period (a month starts on an hour)
    and makes the ids a function of the interval alone, `ih-<deployment>-<from>-<to>` in epoch
    seconds: a farm that reports the same interval twice writes the same events twice, which
    the royalties count once. Seconds are whole (start and end are truncated), so consecutive
    intervals add up exactly. Each event's time is the start of its slice: when it began to run.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    first, last = int(start.timestamp()), int(end.timestamp())
    if last < first:
        raise ValueError(f"the deployment cannot stop ({end}) before it starts ({start})")
    events = []
    for lo, hi in _hours(first, last):
        moment = datetime.fromtimestamp(lo, UTC)
        events.append(
            _event(
                INSTANCE_HOURS,
                f"ih-{served.deployment}-{lo}-{hi}",
                source,
                event_time(moment),
                served,
                {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "requests": 0,
                    "duration_ms": 0,
                    "outcome": "ok",
                    "tokens_source": "measured",
                    "instance_seconds": hi - lo,
                },
            )
        )
    return events
