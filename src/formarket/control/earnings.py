"""A creator's earnings and payouts, as the closed periods' statements in git state them
(`royalties/YYYY-MM/statements/<publisher>.json`): what the dashboard's "My listings" shows
beside the usage. A statement that does not validate is left out; `formarket royalties verify`
is what reports it.

A payout line sent through the payment provider is shown with the provider's reference from
the period's record of transfers (`royalties/transfers/YYYY-MM.json`), or with why it is not
sent yet: the closed statement, which never changes, holds only the payee's."""

from __future__ import annotations

from collections.abc import Iterable

from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.errors import InputError
from formarket.market.layout import ROYALTIES, period_folder
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, list_dir, read_path
from formarket.royalties.sent import read_record
from formarket.royalties.transfers import sent_through_provider
from formarket.schemas.transfers import Transfers
from formarket.schemas.usage import PayoutLine, Statement

__all__ = ["statements_of"]


def statements_of(repo: BaseRepo, branch: str, publishers: Iterable[str]) -> list[Statement]:
    """The statements of `publishers` in every closed period at `branch`'s tip, newest period
    first."""
    tip = find_tip(repo, branch)
    if tip is None:
        return []
    tree = commit_tree(repo, tip)
    wanted = sorted(set(publishers))
    periods = sorted(
        (name for name, (is_dir, _sha) in list_dir(repo, tree, ROYALTIES).items() if is_dir),
        reverse=True,
    )
    found: list[Statement] = []
    for period in periods:
        try:
            folder = period_folder(period)
        except ValueError:
            continue  # not a period's folder
        try:
            record = read_record(repo, tree, period)
        except InputError:
            record = None  # a broken record shows nothing sent; verify reports it
        for publisher in wanted:
            raw = read_path(repo, tree, f"{folder}/statements/{publisher}.json")
            if raw is None:
                continue
            try:
                statement = Statement.model_validate_json(raw)
            except ValidationError:
                continue
            if statement.publisher == publisher and statement.period == period:
                lines = tuple(_as_sent(line, record) for line in statement.payouts)
                found.append(statement.model_copy(update={"payouts": lines}))
    return found


def _as_sent(line: PayoutLine, record: Transfers | None) -> PayoutLine:
    """The line with the provider's reference of its transfer, when it is sent through it."""
    if not sent_through_provider(line):
        return line
    mine = [
        a
        for a in (record.attempts if record is not None else ())
        if (a.publisher, a.currency) == (line.publisher, line.currency)
    ]
    if not mine:
        shown = "not sent yet"
    elif mine[-1].status == "sent":
        shown = mine[-1].reference or ""
    else:
        shown = f"refused, tried again at the next run: {mine[-1].reason}"
    return line.model_copy(update={"reference": shown})
