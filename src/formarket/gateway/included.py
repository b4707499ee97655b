"""Subscriptions' included usage at the gateway: a subscriber's call to the listing it
subscribes to draws on its tier's included requests and tokens for the current period before
anything else, and costs nothing.

As with credit (formarket.gateway.credit), calls draw on this process's lease of the period's
included usage in memory, with no database round trip; a lease half spent is topped up in the
background, a short one in the call's own transaction; a background task writes what each lease
used, and gives back those idle for `idle_return` seconds. Who subscribes to what is known
from the same transactions: an account found without a subscription to a listing is believed
for `recheck` seconds, then asked again in the background while calls go on (a new
subscriber's first calls may so come in before its subscription is seen, and are served as
before it).

A call holds one request and the most tokens it may use (its input and its bound on output)
in the measures the tier limits, and is cut where its tokens end. A call that finds the
period's included usage used up (its lease short, and the database with nothing left) is
`Beyond` it: charged at the tier's overage price, or refused when there is none. Such a
finding is believed for `recheck` seconds, so that calls beyond the included usage cost no
round trip either.

A process that stalls past `ttl` finds its lease gone when it wakes: past half the ttl since a
lease was last written, it is renewed before calls draw on it again, so that a stalled process
never serves calls from included usage the database has taken back (and may have leased to
others). Calls open across the stall count against the lease that follows when they settle.

What leases cost the subscriber: near the end of a period's included usage, a call may be
found beyond it while another gateway process still holds some unused, at most that
process's slice (what it was short plus half of what was left when it took it), until it uses
it or gives it back (`idle_return` seconds after its last call). Never the other way: the
calls of all processes together never use more than the tier includes (but for a process
killed outright, formarket.accounts.included says how much).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from formarket.accounts.included import IncludedStore, Measure, Slice, Terms
from formarket.gateway.credit import maintain_every

__all__ = ["Beyond", "IncludedHold", "IncludedUsage"]

_log = logging.getLogger("formarket.gateway")
_FIRST = Measure(1, 1)


@dataclass(slots=True)
class _Allowance:
    """One account's included usage of one listing, as this process knows it."""

    account_id: int
    listing: str
    terms: Terms | None = None
    checked: float | None = None  # when the database last said what `terms` says (None: never)
    lease: Slice | None = None
    valid_until: float = 0.0  # by this process's clock; see IncludedUsage.try_hold
    used_requests: int = 0
    used_tokens: int = 0
    held_requests: int = 0
    held_tokens: int = 0
    holds: int = 0
    last_used: float = 0.0
    last_top_up: Measure = _FIRST
    exhausted: float | None = None  # when a take last found nothing left
    busy: bool = False  # a background take is under way
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def free(self) -> tuple[int | None, int | None]:
        """What the lease has free in requests and tokens (None: the tier sets no limit)."""
        terms = self.terms
        assert terms is not None
        lease = self.lease
        requests = tokens = None
        if terms.requests is not None:
            leased = lease.requests if lease is not None else 0
            requests = leased - self.used_requests - self.held_requests
        if terms.tokens is not None:
            leased = lease.tokens if lease is not None else 0
            tokens = leased - self.used_tokens - self.held_tokens
        return requests, tokens


@dataclass(slots=True)
class IncludedHold:
    """What one call holds of its subscription's included usage until it settles."""

    allowance: _Allowance
    requests: int
    tokens: int  # 0 when the tier does not limit tokens
    limit: int | None  # the tokens the call may use in all (None: no limit)


@dataclass(frozen=True, slots=True)
class Beyond:
    """The period's included usage is used up: the call is charged at `overage` per
    request, or refused when that is None."""

    overage: Decimal | None


class IncludedUsage:
    """This process's leases of included usage, one per account and listing it serves."""

    def __init__(
        self,
        store: IncludedStore,
        holder: str,
        *,
        headroom: int = 16,
        ttl: float = 60.0,
        idle_return: float = 2.0,
        recheck: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.holder = f"{holder}/{os.getpid()}"
        self.headroom = headroom
        self.ttl = timedelta(seconds=ttl)
        self.idle_return = idle_return
        self.recheck = recheck
        self._clock = clock
        self._wall = wall
        self._allowances: dict[tuple[int, str], _Allowance] = {}

    def try_hold(
        self, account_id: int, listing: str, need: int, want: int
    ) -> IncludedHold | Beyond | bool:
        """In memory: a hold of 1 request and `want` tokens (at least `need`), `Beyond`, or
        False when the account has no subscription to `listing`; True when this process does
        not know yet (`hold` asks the database)."""
        allowance = self._allowances.get((account_id, listing))
        if allowance is None:
            return True
        now = self._clock()
        terms = allowance.terms
        if allowance.checked is None:
            return True  # a call is asking the database: wait for its answer
        if terms is None:
            if now - allowance.checked >= self.recheck:
                self._background(allowance, Measure(), Measure())
            return False
        if self._wall() >= terms.period_end.timestamp():
            return True  # its period is over: the database says what comes next
        if allowance.lease is not None and now >= allowance.valid_until:
            # Past half its ttl since it was last written, the lease is renewed before it is
            # held from again: a process that stalled must learn first whether its lease
            # expired meanwhile (and went to others), with half the ttl left for clocks that
            # differ between hosts (as credit's leases, formarket.gateway.credit).
            return True
        found = self._take(allowance, need, want)
        if found is not None:
            return found
        if allowance.exhausted is not None and now - allowance.exhausted < self.recheck:
            return Beyond(terms.overage)
        return True

    def _take(self, allowance: _Allowance, need: int, want: int) -> IncludedHold | None:
        """A hold from the lease in memory, or None when it is short."""
        terms = allowance.terms
        assert terms is not None
        requests, tokens = allowance.free()
        if (requests is not None and requests < 1) or (tokens is not None and tokens < need):
            return None
        held = 0 if tokens is None else min(want, tokens)
        allowance.held_requests += 0 if requests is None else 1
        allowance.held_tokens += held
        allowance.holds += 1
        top_up = allowance.last_top_up
        if (requests is not None and requests - 1 < top_up.requests / 2) or (
            tokens is not None and tokens - held < top_up.tokens / 2
        ):
            # Half of the last top-up is gone: take more now, in the background, so that no
            # call has to wait for a transaction when the lease runs out.
            self._background(allowance, Measure(), Measure(1, want))
        return IncludedHold(
            allowance,
            0 if requests is None else 1,
            held,
            None if tokens is None else held,
        )

    def _background(self, allowance: _Allowance, short: Measure, more: Measure) -> None:
        if allowance.busy:
            return
        allowance.busy = True
        asyncio.get_running_loop().create_task(self._refresh(allowance, short, more))

    async def _refresh(self, allowance: _Allowance, short: Measure, more: Measure) -> None:
        try:
            async with allowance.lock:
                if self._allowances.get((allowance.account_id, allowance.listing)) is allowance:
                    await self._top_up(allowance, short, more)
        except Exception:
            # A call that needs more takes it itself, and says so if it cannot.
            _log.exception("could not top up a lease of included usage ahead of need")
        finally:
            allowance.busy = False

    async def hold(
        self, account_id: int, listing: str, need: int, want: int
    ) -> IncludedHold | Beyond | None:
        """A hold of 1 request and `want` tokens (at least `need`) of the account's
        subscription to `listing`, leasing more when this process's lease is short; `Beyond`
        when its period's included usage is used up; None when it has no subscription."""
        found = self.try_hold(account_id, listing, need, want)
        if not isinstance(found, bool):
            return found
        if not found:
            return None
        key = (account_id, listing)
        allowance = self._allowances.get(key)
        if allowance is None:
            allowance = self._allowances[key] = _Allowance(account_id, listing)
        async with allowance.lock:
            if self._allowances.get(key) is not allowance:
                return await self.hold(account_id, listing, need, want)
            # Another call may have asked the database while this one waited.
            found = self.try_hold(account_id, listing, need, want)
            if not isinstance(found, bool):
                return found
            if not found:
                return None
            terms = allowance.terms
            fresh = terms is not None and self._wall() < terms.period_end.timestamp()
            short = Measure(1, need)  # not knowing the terms yet: the store ignores the rest
            if fresh:
                requests, tokens = allowance.free()
                short = Measure(
                    0 if requests is None else max(1 - requests, 0),
                    0 if tokens is None else max(need - tokens, 0),
                )
            await self._top_up(allowance, short, Measure(1, want))
            if allowance.terms is None:
                return None
            done = self._take(allowance, need, want)
            if done is not None:
                return done
            allowance.exhausted = self._clock()
            return Beyond(allowance.terms.overage)

    async def _top_up(self, allowance: _Allowance, short: Measure, more: Measure) -> None:
        # Each top-up asks for twice the last, as credit's do (formarket.gateway.credit).
        last = allowance.last_top_up
        asked = Measure(
            max(more.requests * self.headroom, last.requests * 2),
            max(more.tokens * self.headroom, last.tokens * 2),
        )
        before = allowance.lease
        started = self._clock()
        terms, lease = await asyncio.to_thread(
            self.store.take_included,
            allowance.account_id,
            allowance.listing,
            self.holder,
            before,
            Measure(allowance.used_requests, allowance.used_tokens),
            short=short,
            more=asked,
            ttl=self.ttl,
        )
        allowance.checked = self._clock()
        allowance.terms = terms
        if lease is None or before is None or lease.id != before.id:
            # A new lease (of a new period, or the old one was lost): what open calls hold
            # stays held, and counts against the new one when they settle.
            allowance.used_requests = allowance.used_tokens = 0
            if lease is not None:
                allowance.last_top_up = Measure(max(lease.requests, 1), max(lease.tokens, 1))
        elif lease.requests > before.requests or lease.tokens > before.tokens:
            allowance.last_top_up = Measure(
                max(lease.requests - before.requests, 1), max(lease.tokens - before.tokens, 1)
            )
        if lease is not None and (
            before is None
            or lease.id != before.id
            or lease.requests > before.requests
            or lease.tokens > before.tokens
        ):
            allowance.exhausted = None
        allowance.lease = lease
        if lease is not None:
            allowance.valid_until = started + self.ttl.total_seconds() / 2

    def settle(self, hold: IncludedHold, tokens: int) -> None:
        """End a hold: one request and `tokens` (at most what was held) are used, when the
        call is charged; the rest is free again. `tokens` 0 and no request for a call that
        was not served: call `release`."""
        allowance = hold.allowance
        allowance.held_requests -= hold.requests
        allowance.held_tokens -= hold.tokens
        allowance.holds -= 1
        allowance.used_requests += hold.requests
        allowance.used_tokens += min(max(tokens, 0), hold.tokens)
        allowance.last_used = self._clock()

    def release(self, hold: IncludedHold) -> None:
        """End a hold that used nothing (the call was not served)."""
        allowance = hold.allowance
        allowance.held_requests -= hold.requests
        allowance.held_tokens -= hold.tokens
        allowance.holds -= 1
        allowance.last_used = self._clock()

    async def maintain(self) -> None:
        """Write what each lease used and renew it; give back those idle long enough, and
        forget accounts without a subscription that no call asked about for a while."""
        now = self._clock()
        for key, allowance in list(self._allowances.items()):
            async with allowance.lock:
                if self._allowances.get(key) is not allowance:
                    continue
                idle = allowance.holds == 0 and now - allowance.last_used >= self.idle_return
                lease = allowance.lease
                if lease is None:
                    checked = allowance.checked
                    if idle and checked is not None and now - checked >= self.recheck:
                        self._allowances.pop(key, None)
                    continue
                used = Measure(allowance.used_requests, allowance.used_tokens)
                if idle:
                    # Out of reach of new holds first, so none can come in while it returns.
                    self._allowances.pop(key, None)
                    await asyncio.to_thread(
                        self.store.give_back_included, allowance.account_id, lease, used
                    )
                    continue
                started = self._clock()
                kept = await asyncio.to_thread(self.store.renew_included, lease, used, self.ttl)
                if kept:
                    allowance.valid_until = started + self.ttl.total_seconds() / 2
                else:
                    _log.warning(
                        "a lease of included usage of account %d expired while in use",
                        allowance.account_id,
                    )
                    allowance.lease = None
                    allowance.used_requests = allowance.used_tokens = 0

    async def run(self, every: float = 1.0) -> None:
        """`maintain` every `every` seconds, until cancelled."""
        await maintain_every(self.maintain, every, "leases of included usage")

    def close(self) -> None:
        """Give back every lease (at shutdown, when no call is open)."""
        for key, allowance in list(self._allowances.items()):
            self._allowances.pop(key, None)
            if allowance.lease is not None:
                used = Measure(allowance.used_requests, allowance.used_tokens)
                with contextlib.suppress(Exception):
                    self.store.give_back_included(allowance.account_id, allowance.lease, used)
