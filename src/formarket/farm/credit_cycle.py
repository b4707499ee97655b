"""The reconcile cycle's part in prepaid credit: charge the instance time metered, then tell
or stop the accounts out of credit (formarket.farm.billing, formarket.farm.out_of_credit).

The accounts database is the one the gateways and the control plane share
(FORMARKET_DATABASE_URL, else accounts.sqlite in the gateway's folder); it is opened only when
there is something to charge or a priced deployment runs, so a farm of free listings never
touches it. When it cannot be opened, the charges stay pending and nothing stops: the farm
never stops a deployment on a balance it could not read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from formarket.accounts.credit import CreditStore, Standing
from formarket.accounts.database import database_url, open_database
from formarket.accounts.subscriptions import SubscriptionStore
from formarket.errors import FormarketError
from formarket.farm import status
from formarket.farm.billing import HourPrices, hour_price, pending_charges, settle_charges
from formarket.farm.desired import read_deployments, submit
from formarket.farm.notify import Commenter
from formarket.farm.out_of_credit import grace_of, overdue, stop_message, tell_out_of_credit
from formarket.farm.pricing import published_pricing
from formarket.farm.publish import tip_reader
from formarket.farm.settings import FarmSettings, open_market
from formarket.market.governance import bot_identity
from formarket.market.layout import POLICY
from formarket.schemas.deployment import Deployment

__all__ = ["CreditCycle", "charge_and_stop", "hour_prices_of", "renew_subscriptions"]

_log = logging.getLogger("formarket.farm")
_ENGINES: dict[str, Engine] = {}
_HOUR_PRICES: dict[tuple[str, str, str], Decimal] = {}


@dataclass(frozen=True, slots=True)
class CreditCycle:
    charged: int = 0
    pending: int = 0
    at_zero: tuple[str, ...] = ()  # accounts, as git names them
    stopped: tuple[str, ...] = ()
    told: tuple[int, ...] = ()
    renewed: tuple[tuple[str, str], ...] = ()  # (subscription, renewed or lapsed)


def hour_prices_of(settings: FarmSettings) -> HourPrices:
    """Per-hour prices of listing versions as first published (the royalties' price book),
    read at most once per call of this and only for a version not priced yet."""
    pricing = published_pricing(settings)

    def prices(listing: str, version: str) -> Decimal:
        key = (str(settings.repo), listing, version)
        found = _HOUR_PRICES.get(key)
        if found is not None:
            return found
        terms = pricing(listing, version)
        if terms is None:
            return Decimal(0)  # not published on the branch (yet): no price known
        found = _HOUR_PRICES[key] = hour_price(terms)
        return found

    return prices


def _engine(settings: FarmSettings) -> Engine:
    url = database_url(status.gateway_state(settings).root)
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = open_database(url)
    return engine


def _credit(settings: FarmSettings, clock: Callable[[], datetime]) -> CreditStore:
    return CreditStore(_engine(settings), clock=clock)


def renew_subscriptions(settings: FarmSettings, clock: Callable[[], datetime]) -> dict[str, str]:
    """Charge the subscriptions whose month has ended for the next, or lapse them; each one's
    outcome. Only where an accounts database is: a farm that has none has no subscriptions."""
    url = database_url(status.gateway_state(settings).root)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    try:
        return SubscriptionStore(_engine(settings), clock=clock).renew_due()
    except (FormarketError, SQLAlchemyError) as exc:
        _log.warning("subscriptions not renewed this cycle: %s", exc)
        return {}


def charge_and_stop(
    settings: FarmSettings,
    desired: Mapping[str, Deployment],
    prices: HourPrices,
    clock: Callable[[], datetime],
    github: Callable[[], Commenter] | None,
) -> CreditCycle:
    """Apply the pending charges; mark, tell and, past the grace, stop accounts at zero."""
    priced = frozenset(
        d.id
        for d in desired.values()
        if d.state == "running" and prices(d.listing.id, d.listing.version) > 0
    )
    if not priced and not pending_charges(settings.state):
        return CreditCycle()
    try:
        credit = _credit(settings, clock)
        pseudonyms = status.farm_pseudonyms(settings)
        billed = settle_charges(settings.state, credit, pseudonyms)
        accounts = {desired[d].account for d in priced}
        ids = credit.accounts_named(accounts, pseudonyms)
        standings: dict[str, Standing] = {
            name: credit.standing(account_id, mark=True) for name, account_id in ids.items()
        }
    except (FormarketError, SQLAlchemyError) as exc:
        _log.warning("prepaid credit not looked at this cycle: %s", exc)
        return CreditCycle(pending=len(pending_charges(settings.state)))
    now = clock()
    stopped: list[str] = []
    repo = open_market(settings)
    try:
        grace = grace_of(tip_reader(repo, settings.branch)(POLICY))
        due = overdue(desired, priced, standings, grace)
        for item in due:
            if now < item.stops_at:
                continue
            # The documents as they are now, not as the cycle read them: a deployment
            # upgraded meanwhile is stopped at its new version, not put back to the old one.
            current = read_deployments(repo, settings.branch, problems=[])
            wanted = [
                current[d].model_copy(update={"state": "stopped"})
                for d in item.deployments
                if d in current and current[d].state == "running"
            ]
            if not wanted:
                continue
            try:
                submit(
                    repo,
                    settings.branch,
                    wanted,
                    stop_message(item, grace),
                    bot_identity(repo, settings.branch),
                )
            except FormarketError as exc:  # the next cycle tries again
                _log.warning("could not stop %s: %s", ", ".join(item.deployments), exc)
                continue
            stopped += [d.id for d in wanted]
    finally:
        repo.close()
    told: list[int] = []
    waiting = [item for item in due if now < item.stops_at]
    if settings.github_repo and github is not None and waiting:
        told = tell_out_of_credit(settings.state, desired, waiting, settings.github_repo, github)
    return CreditCycle(
        billed.charged,
        billed.pending,
        tuple(item.account for item in due),
        tuple(stopped),
        tuple(told),
    )
