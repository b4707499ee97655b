"""What an account out of credit is told by the control plane: since when its balance has
been at zero, and when the farm stops its deployments priced by the hour (the grace of the
platform's terms, royalties/policy.yaml, at the marketplace's tip)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from formarket.accounts.credit import CreditStore
from formarket.accounts.store import AccountView
from formarket.farm.out_of_credit import grace_of
from formarket.farm.publish import tip_reader
from formarket.farm.settings import FarmSettings, open_market
from formarket.market.layout import POLICY

__all__ = ["CreditNotice", "credit_notice"]


@dataclass(frozen=True, slots=True)
class CreditNotice:
    notice: str | None
    zero_since: datetime | None
    stops_at: datetime | None


def credit_notice(credit: CreditStore, farm: FarmSettings, account: AccountView) -> CreditNotice:
    """The notice while the farm has found the account at zero; none otherwise."""
    since = credit.standing(account.id).zero_since
    if since is None:
        return CreditNotice(None, None, None)
    repo = open_market(farm)
    try:
        grace = grace_of(tip_reader(repo, farm.branch)(POLICY))
    finally:
        repo.close()
    stops_at = since + grace
    notice = (
        f"Your balance has been at or below zero since {since:%Y-%m-%d %H:%M} UTC: unless you"
        f" top up, your deployments priced by the hour stop at {stops_at:%Y-%m-%d %H:%M} UTC"
        " (or have stopped)."
    )
    return CreditNotice(notice, since, stops_at)
