"""Real invoices for the control plane's tests: usage of a priced model committed by the bot for
a finished month, top-ups credited in that month, and the operator's close with invoices
(`close_with_invoices`), which commits the index to git and keeps the invoices in the
accounts database the control plane reads."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from dulwich.repo import Repo

from formarket.accounts.credit import CreditStore
from formarket.control.context import Control
from formarket.control.invoicing import close_with_invoices
from formarket.market.governance import bot_identity
from formarket.market.layout import POLICY
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.pricing import PLATFORM_CURRENCY
from tests.deploy.conftest import MAINTAINER
from tests.royalties.helpers import POLICY_FILE
from tests.usage.helpers import call, gz, line, usage_file

__all__ = ["MODEL", "PERIOD", "close_month"]

PERIOD = "2026-03"
# Priced per token in the platform's currency: 0.20 per million in, 0.60 per million out.
MODEL = ("northwind-ai/northwind-chat-8b", "1.2.0")


def close_month(
    control: Control,
    calls: Mapping[str, int],
    top_ups: Mapping[str, Decimal] | None = None,
    *,
    period: str = PERIOD,
    now: datetime | None = None,
) -> None:
    """Each login's `calls` of MODEL (a million tokens in and out each, so that they cost
    cents), committed by the bot on the first of `period`; each login's top-up credited on
    its 5th; then `period` closed with invoices at `now` (a period closes once it is over)."""
    year, month = int(period[:4]), int(period[5:7])
    fifth = datetime(year, month, 5, 12, tzinfo=UTC)
    credit = CreditStore(control.store.engine, clock=lambda: fifth)
    for login, amount in (top_ups or {}).items():
        account = control.store.account(login)
        assert account is not None, f"{login} signs in first"
        ident = "cs_test_" + hashlib.sha256(f"{login}/{period}".encode()).hexdigest()[:24]
        credit.open_topup(account, ident, amount)
        assert credit.credit_topup(ident, amount, PLATFORM_CURRENCY)
    events = []
    for login, count in sorted(calls.items()):
        for n in range(count):
            event = call(
                f"{login}-{n}",
                model=MODEL,
                time=f"{period}-01T00:00:00Z",
                input_tokens=1_000_000,
                output_tokens=1_000_000,
            )
            event["data"]["account"] = control.pseudonyms.of(login)
            events.append(line(event))
    repo = Repo(str(control.farm.repo))
    try:
        if read_path(repo, commit_tree(repo, branch_tip(repo, "main")), POLICY) is None:
            # The platform's terms, as a maintainer commits them before a first close.
            commit_changes(
                repo, "main", {POLICY: POLICY_FILE}, "The terms", Identity(MAINTAINER, "m@x.org")
            )
        if events:
            commit_changes(
                repo,
                "main",
                {usage_file(f"{period}-01"): gz(events)},
                f"Usage of {period}",
                bot_identity(repo, "main"),
            )
        close_with_invoices(
            repo, period, control.invoices, control.pseudonyms, commit=True, now=now
        )
    finally:
        repo.close()
