"""Which publishers an account speaks for: those whose `owners` name its GitHub login, as the
pull-request check decides who may change a publisher's listings."""

from __future__ import annotations

from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.market.layout import PUBLISHERS
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, list_dir, read_blob
from formarket.schemas.publisher import Publisher
from formarket.yamldoc import YamlError, load_yaml

__all__ = ["publishers_of"]


def publishers_of(repo: BaseRepo, branch: str, login: str) -> frozenset[str]:
    """The ids of the publishers at `branch`'s tip that `login` owns (GitHub logins compare
    without case, as GitHub compares them)."""
    tip = find_tip(repo, branch)
    if tip is None:
        return frozenset()
    tree = commit_tree(repo, tip)
    mine: set[str] = set()
    for name, (is_dir, sha) in list_dir(repo, tree, PUBLISHERS).items():
        if is_dir or not name.endswith(".yaml"):
            continue
        try:
            publisher = Publisher.model_validate(
                load_yaml(read_blob(repo, sha), f"{PUBLISHERS}/{name}").data
            )
        except (YamlError, ValidationError):
            continue  # the registry check reports it; an invalid file speaks for no one
        if login.lower() in {owner.lower() for owner in publisher.owners}:
            mine.add(publisher.id)
    return frozenset(mine)
