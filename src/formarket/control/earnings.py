"""A creator's earnings and payouts, as the closed periods' statements in git state them
(`royalties/YYYY-MM/statements/<publisher>.json`): what the dashboard's "My listings" shows
beside the usage. A statement that does not validate is left out; `formarket royalties verify`
is what reports it."""

from __future__ import annotations

from collections.abc import Iterable

from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.market.layout import ROYALTIES, period_folder
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, list_dir, read_path
from formarket.schemas.usage import Statement

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
        for publisher in wanted:
            raw = read_path(repo, tree, f"{folder}/statements/{publisher}.json")
            if raw is None:
                continue
            try:
                statement = Statement.model_validate_json(raw)
            except ValidationError:
                continue
            if statement.publisher == publisher and statement.period == period:
                found.append(statement)
    return found
