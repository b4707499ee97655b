"""Who runs the marketplace: the maintainers, the deployers and the bot, as
`registry/governance.yaml` names them at a commit."""

from __future__ import annotations

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.errors import InputError, NotFoundError
from formarket.market.layout import GOVERNANCE
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import Identity
from formarket.schemas.publisher import Governance
from formarket.yamldoc import YamlError, load_yaml

__all__ = ["bot_at", "bot_identity", "bot_of", "read_governance"]


def read_governance(repo: BaseRepo, commit_id: ObjectID) -> Governance:
    """registry/governance.yaml at a commit; InputError when it is missing or invalid."""
    raw = read_path(repo, commit_tree(repo, commit_id), GOVERNANCE)
    where = f"{GOVERNANCE} at {commit_id.decode()[:12]}"
    if raw is None:
        raise InputError(
            f"there is no {where}",
            hint="a maintainer commits it first: it names the maintainers and the bot",
        )
    try:
        return Governance.model_validate(load_yaml(raw, GOVERNANCE).data)
    except YamlError as exc:
        raise InputError(
            str(exc), hint=exc.hint or f"fix the YAML of {GOVERNANCE}: it names the bot"
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(
            f"{where} is not valid: {field}: {first['msg']}",
            hint="it names the maintainers and the bot; `formarket schema governance` shows"
            " its fields",
        ) from exc


def bot_of(governance: Governance) -> Identity:
    """The identity the bot commits as."""
    return Identity(governance.bot, f"{governance.bot}@users.noreply.github.com")


def bot_at(repo: BaseRepo, commit_id: ObjectID) -> Identity:
    """The bot that registry/governance.yaml names at a commit."""
    return bot_of(read_governance(repo, commit_id))


def bot_identity(repo: BaseRepo, branch: str) -> Identity:
    """The bot that registry/governance.yaml names at the tip of `branch`: the only writer of
    deployments, usage and royalties."""
    tip = find_tip(repo, branch)
    if tip is None:
        raise NotFoundError(
            f"the branch {branch} has no commits, so no {GOVERNANCE} names the bot",
            hint="use the marketplace's repository and branch (--repo, --branch)",
        )
    return bot_at(repo, tip)
