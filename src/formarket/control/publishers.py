"""Which publishers an account speaks for: those whose `owners` name its GitHub login, as the
pull-request check decides who may change a publisher's listings."""

from __future__ import annotations

from dulwich.repo import BaseRepo

from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree
from formarket.registry.publishers import valid_publishers

__all__ = ["publishers_of"]


def publishers_of(repo: BaseRepo, branch: str, login: str) -> frozenset[str]:
    """The ids of the publishers at `branch`'s tip that `login` owns (GitHub logins compare
    without case, as GitHub compares them)."""
    tip = find_tip(repo, branch)
    if tip is None:
        return frozenset()
    key = login.lower()
    return frozenset(
        publisher.id
        for publisher in valid_publishers(repo, commit_tree(repo, tip))
        if key in {owner.lower() for owner in publisher.owners}
    )
