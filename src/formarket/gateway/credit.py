"""Prepaid credit at the gateway: a call through an account's key holds the most it can cost
before it is forwarded, and settles when it ends.

Holds come out of this process's lease of the account's balance (formarket.accounts.credit
says why a lease), in memory, with no database round trip: the usual case costs a few
microseconds. When half of what a lease last took is gone, the process takes more in one
transaction, in the background (in a thread, so calls go on meanwhile); a call that finds the
lease short all the same waits for a top-up of its own, and is refused when the balance cannot
cover it. A background task writes what each
lease spent and renews it, and gives back a lease that held nothing for `idle_return` seconds,
so that credit one process no longer needs is there for the others. Every lease is given back
at shutdown; one a killed process held expires after `ttl`.

A process that stalls past `ttl` finds its lease gone when it wakes, and the balance has
taken back what its open calls held, and may have leased it to others. Those calls were
served all the same, so what they spend, and what the lease spent since it was last written,
is charged to the balance (one charge per lost lease, brought up to date at each `maintain`):
the database misses no cent, and the balance goes below zero by at most what was open when
the process stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from formarket.accounts.credit import CreditStore, LeaseGrant, down, up

__all__ = ["Credit", "Hold", "Short", "maintain_every"]

_log = logging.getLogger("formarket.gateway")
_ZERO = Decimal(0)


@dataclass(slots=True)
class _Lease:
    account_id: int
    grant: LeaseGrant | None = None
    spent: Decimal = _ZERO
    written: Decimal = _ZERO  # `spent` as the database last recorded it
    valid_until: float = 0.0  # by this process's clock; see Credit.try_hold
    held: Decimal = _ZERO
    holds: int = 0
    last_used: float = 0.0
    last_top_up: Decimal = _ZERO
    refilling: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> Decimal:
        amount = self.grant.amount if self.grant is not None else _ZERO
        return amount - self.spent - self.held


@dataclass(slots=True)
class Hold:
    """What one call holds of its account's credit until it settles."""

    lease: _Lease
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Short:
    """The balance cannot cover the call."""

    need: Decimal


async def maintain_every(
    maintain: Callable[[], Awaitable[None]], every: float, leases: str
) -> None:
    """Run `maintain` every `every` seconds, until cancelled; a failure is logged, and the
    next round tries again (the database may be down for a moment; the leases hold until
    their ttl)."""
    while True:
        await asyncio.sleep(every)
        try:
            await maintain()
        except Exception:
            _log.exception("could not renew this gateway's %s", leases)


class Credit:
    """This process's leases, one per account it serves."""

    def __init__(
        self,
        store: CreditStore,
        holder: str,
        *,
        headroom: int = 16,
        ttl: float = 60.0,
        idle_return: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.holder = f"{holder}/{os.getpid()}"
        self.headroom = headroom
        self.ttl = timedelta(seconds=ttl)
        self.idle_return = idle_return
        self._clock = clock
        self._leases: dict[int, _Lease] = {}
        # Leases found expired under open calls or unwritten spending, by their charge id,
        # with what was charged of them so far.
        self._lost: dict[str, tuple[_Lease, Decimal]] = {}

    def try_hold(self, account_id: int, want: Decimal) -> Hold | None:
        """A hold of `want` from the lease in memory, or None when the lease cannot cover it
        or may have expired."""
        lease = self._leases.get(account_id)
        # Past half its ttl since it was last written, the lease is renewed before it is
        # held from again: a process that stalled must learn first whether its lease
        # expired meanwhile (and went to others), with half the ttl left for clocks that
        # differ between hosts.
        if lease is None or lease.free < want or self._clock() >= lease.valid_until:
            return None
        want = up(want)
        if lease.free < want:
            return None
        lease.held += want
        lease.holds += 1
        if not lease.refilling and lease.free < lease.last_top_up / 2:
            # Half of the last top-up is gone: take more now, in the background, so that no
            # call has to wait for a transaction when the lease runs out.
            lease.refilling = True
            asyncio.get_running_loop().create_task(self._refill(lease, want))
        return Hold(lease, want)

    async def _refill(self, lease: _Lease, want: Decimal) -> None:
        try:
            async with lease.lock:
                if self._leases.get(lease.account_id) is lease:
                    await self._top_up(lease, _ZERO, want)
        except Exception:
            # A call that needs more takes it itself, and says so if it cannot.
            _log.exception("could not top up a credit lease ahead of need")
        finally:
            lease.refilling = False

    async def hold(self, account_id: int, need: Decimal, want: Decimal) -> Hold | Short:
        """Hold `want` (at least `need`) of the account's credit, leasing more when this
        process's lease is short."""
        found = self.try_hold(account_id, want)
        if found is not None:
            return found
        lease = self._leases.get(account_id)
        if lease is None:
            lease = self._leases[account_id] = _Lease(account_id)
        async with lease.lock:
            if self._leases.get(account_id) is not lease:
                # Given back or lost while this call waited: start again on the new one.
                return await self.hold(account_id, need, want)
            if lease.free < want or self._clock() >= lease.valid_until:
                await self._top_up(lease, need - lease.free, want - lease.free)
                if self._leases.get(account_id) is not lease:
                    # Lost (it expired while this process stalled): a new lease may have it.
                    return await self.hold(account_id, need, want)
            if lease.free < need:
                if lease.grant is None and lease.holds == 0:
                    self._leases.pop(account_id, None)
                return Short(need)
            amount = min(up(want), lease.free)
            lease.held += amount
            lease.holds += 1
            return Hold(lease, amount)

    def settle(self, hold: Hold, cost: Decimal) -> Decimal:
        """End a hold: `cost` (at most what was held) is spent, the rest is free again.
        Returns what was spent."""
        lease = hold.lease
        lease.held -= hold.amount
        lease.holds -= 1
        spent = down(min(max(cost, _ZERO), hold.amount))
        lease.spent += spent
        lease.last_used = self._clock()
        return spent

    async def _top_up(self, lease: _Lease, short: Decimal, more: Decimal) -> None:
        # Each top-up asks for twice the last: a busy account's lease soon lasts for many
        # calls, so that transactions stay rare, while the store never hands one process
        # more than half of what is left (the others' share).
        asked = max(more * self.headroom, lease.last_top_up * 2)
        spent, started = lease.spent, self._clock()
        grant, added = await asyncio.to_thread(
            self.store.take,
            lease.account_id,
            self.holder,
            lease.grant,
            spent,
            short=max(short, _ZERO),
            more=asked,
            ttl=self.ttl,
        )
        if added > 0:
            lease.last_top_up = added
        if grant is None and lease.grant is not None:
            self._expired(lease, lease.grant)
            lease.grant = None
            return
        if grant is not None:
            lease.written = min(spent, grant.amount)
            lease.valid_until = started + self.ttl.total_seconds() / 2
        lease.grant = grant

    def _expired(self, lease: _Lease, grant: LeaseGrant) -> None:
        # It expired under us (this process stalled past its ttl) and went back to the
        # balance, less what was last written as spent: the rest is charged (see the doc).
        _log.warning("the credit lease of account %d expired while in use", lease.account_id)
        self._leases.pop(lease.account_id, None)
        if lease.holds > 0 or lease.spent > lease.written:
            self._lost[f"lease:{grant.id}"] = (lease, _ZERO)

    async def _charge_lost(self) -> None:
        for charge_id, (lease, charged) in list(self._lost.items()):
            due = lease.spent - lease.written
            if due > charged:
                await asyncio.to_thread(
                    self.store.charge, lease.account_id, charge_id, due, "calls"
                )
                charged = due
            if lease.holds == 0 and lease.spent - lease.written == charged:
                del self._lost[charge_id]
            else:
                self._lost[charge_id] = (lease, charged)

    async def maintain(self) -> None:
        """Write what each lease spent and renew it; give back those idle long enough; charge
        what lost leases spent."""
        await self._charge_lost()
        now = self._clock()
        for account_id, lease in list(self._leases.items()):
            async with lease.lock:
                if self._leases.get(account_id) is not lease:
                    continue
                grant = lease.grant
                if grant is None:
                    if lease.holds == 0:
                        self._leases.pop(account_id, None)
                    continue
                if lease.holds == 0 and now - lease.last_used >= self.idle_return:
                    # Out of reach of new holds first, so none can come in while it returns.
                    self._leases.pop(account_id, None)
                    returned = await asyncio.to_thread(
                        self.store.give_back, account_id, grant, lease.spent
                    )
                    if not returned:
                        self._expired(lease, grant)
                    continue
                spent, started = lease.spent, self._clock()
                kept = await asyncio.to_thread(self.store.renew, grant, spent, self.ttl)
                if kept:
                    lease.written = min(spent, grant.amount)
                    lease.valid_until = started + self.ttl.total_seconds() / 2
                else:
                    self._expired(lease, grant)
                    lease.grant = None
        await self._charge_lost()

    async def run(self, every: float = 1.0) -> None:
        """`maintain` every `every` seconds, until cancelled."""
        await maintain_every(self.maintain, every, "credit leases")

    def close(self) -> None:
        """Give back every lease, and charge what lost leases spent (at shutdown, when no
        call is open)."""
        for account_id, lease in list(self._leases.items()):
            self._leases.pop(account_id, None)
            if lease.grant is not None:
                with contextlib.suppress(Exception):
                    if not self.store.give_back(account_id, lease.grant, lease.spent):
                        self._expired(lease, lease.grant)
        for charge_id, (lease, _) in list(self._lost.items()):
            self._lost.pop(charge_id, None)
            with contextlib.suppress(Exception):
                self.store.charge(lease.account_id, charge_id, lease.spent - lease.written, "calls")
