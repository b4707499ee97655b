"""Desired state: the deployments that should run, as `registry/deployments/<id>.yaml` in git.

Only the bot writes here (the pull-request check refuses anyone else). Writes are one
compare-and-swap commit, retried on conflict, so a CLI request, an issue and the reconciler
never lose each other's work. A document that does not parse is reported and left alone: the
farm keeps running everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import yaml
from dulwich.objects import Blob, ObjectID
from dulwich.repo import Repo
from pydantic import ValidationError

from formarket.errors import InputError, NotFoundError
from formarket.market.layout import DEPLOYMENTS, deployment_path
from formarket.market.refs import find_tip
from formarket.market.trees import DIR_MODE, commit_tree, subtree, tree
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.deployment import Deployment
from formarket.yamldoc import YamlError, load_yaml

__all__ = [
    "dump_deployment",
    "read_deployments",
    "set_state",
    "submit",
]


def dump_deployment(deployment: Deployment) -> bytes:
    """The document's canonical bytes: the same deployment always writes the same file."""
    plain = deployment.model_dump(mode="json", exclude_defaults=False)
    header = (
        "# Desired state, written by the farm's bot; `formarket deployments stop ID` stops it.\n"
    )
    body = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100)
    return (header + body).encode()


def parse_deployment(raw: bytes, path: str) -> Deployment:
    loaded = load_yaml(raw, path)
    try:
        deployment = Deployment.model_validate(loaded.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"{path}: {field}: {first['msg']}") from exc
    if path != deployment_path(deployment.id):
        raise InputError(f"{path}: its id is {deployment.id}, which belongs in another file")
    return deployment


def read_deployments(
    repo: Repo, branch: str = "main", *, problems: list[str] | None = None
) -> dict[str, Deployment]:
    """Every desired deployment at the branch tip, by id.

    With `problems`, a document that does not parse is described there and skipped; without,
    it raises."""
    return _read_at(repo, find_tip(repo, branch), branch, problems)


def _read_at(
    repo: Repo, commit: ObjectID | None, label: str, problems: list[str] | None
) -> dict[str, Deployment]:
    if commit is None:
        return {}
    try:
        root = tree(repo, commit_tree(repo, commit))
    except NotFoundError as exc:
        raise NotFoundError(f"{label}: {exc.message}") from None
    folder = subtree(repo, root, DEPLOYMENTS) if root is not None else None
    found: dict[str, Deployment] = {}
    for item in folder.iteritems() if folder is not None else ():
        name = item.path.decode("utf-8", "surrogateescape")
        if not name.endswith(".yaml") or item.mode == DIR_MODE:
            continue
        path = f"{DEPLOYMENTS}/{name}"
        try:
            deployment = _parsed(repo, path, item.sha)
        except (InputError, YamlError) as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        found[deployment.id] = deployment
    return found


# The reconciler reads every deployment every cycle and few change between cycles: a document
# is parsed once per content (git's blob id) and path. Deployments are frozen, so sharing is safe.
_PARSED: dict[tuple[str, bytes], Deployment] = {}
_PARSED_LIMIT = 50_000


def _parsed(repo: Repo, path: str, blob_id: ObjectID) -> Deployment:
    key = (path, bytes(blob_id))
    deployment = _PARSED.get(key)
    if deployment is None:
        blob = repo.object_store[blob_id]
        if not isinstance(blob, Blob):
            raise InputError(f"{path}: not a file")
        deployment = parse_deployment(blob.as_raw_string(), path)
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[key] = deployment
    return deployment


def _changes(
    repo: Repo, commit: ObjectID | None, wanted: Iterable[Deployment]
) -> dict[str, bytes | None]:
    """The files to write so that `commit` holds `wanted` exactly."""
    current = _read_at(repo, commit, "the branch tip", [])
    changes: dict[str, bytes | None] = {}
    for deployment in wanted:
        if current.get(deployment.id) != deployment:
            changes[deployment_path(deployment.id)] = dump_deployment(deployment)
    return changes


def submit(
    repo: Repo,
    branch: str,
    deployments: Sequence[Deployment],
    message: str,
    bot: Identity,
) -> ObjectID | None:
    """Commit the documents in one compare-and-swap commit; None when all were already there
    exactly as given (re-running a request changes nothing)."""
    read = find_tip(repo, branch)
    first = _changes(repo, read, deployments)
    if not first:
        return None

    def changes(tip: ObjectID | None) -> dict[str, bytes | None]:
        # Computed again only when another writer moved the branch since it was read.
        return first if tip == read else _changes(repo, tip, deployments)

    return commit_changes(repo, branch, changes, message, bot)


def set_state(
    repo: Repo,
    branch: str,
    deployment_id: str,
    state: Literal["running", "stopped"],
    message: str,
    bot: Identity,
) -> ObjectID | None:
    """Change one deployment's desired state; None when it already was."""
    current = read_deployments(repo, branch, problems=[])
    if deployment_id not in current:
        raise NotFoundError(
            f"no deployment {deployment_id} in {DEPLOYMENTS}/",
            hint="`formarket deployments list` shows them",
        )
    if current[deployment_id].state == state:
        return None
    changed = current[deployment_id].model_copy(update={"state": state})
    return submit(repo, branch, [changed], message, bot)
