"""The publishers of a commit, as the parts that act on them read them: every
`registry/publishers/<name>.yaml` that parses and validates. An invalid file is left out (the
registry check reports it); it names no owner and sets no payout terms."""

from __future__ import annotations

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.market.layout import PUBLISHERS
from formarket.market.trees import list_dir, read_blob
from formarket.schemas.publisher import Publisher
from formarket.yamldoc import YamlError, load_yaml

__all__ = ["valid_publishers"]


def valid_publishers(repo: BaseRepo, tree: ObjectID) -> list[Publisher]:
    found: list[Publisher] = []
    for name, (is_dir, sha) in sorted(list_dir(repo, tree, PUBLISHERS).items()):
        if is_dir or not name.endswith(".yaml"):
            continue
        try:
            raw = load_yaml(read_blob(repo, sha), f"{PUBLISHERS}/{name}").data
            found.append(Publisher.model_validate(raw))
        except (YamlError, ValidationError):
            continue
    return found
