"""Branches, revisions and first-parent history: which commit a name means.

A branch `main` is the ref `refs/heads/main`; nothing outside this package spells that.
"""

from __future__ import annotations

from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import BaseRepo

from formarket.errors import NotFoundError, UsageError

__all__ = [
    "branch_ref",
    "branch_tip",
    "checked_out_branch",
    "find_tip",
    "first_parent_chain",
    "resolve_rev",
    "set_branch",
]

_HEADS = b"refs/heads/"
_HEAD = Ref(b"HEAD")
_SYMREF = b"ref: "


def branch_ref(branch: str) -> Ref:
    return Ref(_HEADS + branch.encode())


def find_tip(repo: BaseRepo, branch: str) -> ObjectID | None:
    """The commit at the tip of `branch`; None when there is no such branch (or it has no
    commits yet)."""
    try:
        return repo.refs[branch_ref(branch)]
    except KeyError:
        return None


def branch_tip(repo: BaseRepo, branch: str) -> ObjectID:
    """The commit at the tip of `branch`; NotFoundError when there is none."""
    tip = find_tip(repo, branch)
    if tip is None:
        raise NotFoundError(f"no branch {branch}", hint="pass --branch")
    return tip


def set_branch(repo: BaseRepo, branch: str, commit_id: ObjectID) -> None:
    """Point `branch` at a commit, whatever it pointed at: for starting a branch (a pull
    request) or a fixture. A bot's commit goes through the writer instead, which never loses
    another writer's work."""
    repo.refs[branch_ref(branch)] = commit_id


def checked_out_branch(repo: BaseRepo) -> str | None:
    """The branch HEAD names (even one without commits yet); None for a detached HEAD."""
    raw = repo.refs.read_ref(_HEAD)
    if raw is None or not raw.startswith(_SYMREF + _HEADS):
        return None
    return raw[len(_SYMREF + _HEADS) :].strip().decode("utf-8", "surrogateescape")


def first_parent_chain(
    repo: BaseRepo, tip: ObjectID, stop: set[ObjectID] | None = None
) -> list[ObjectID]:
    """The first-parent history of `tip`, oldest first; stops after a commit in `stop`."""
    chain = []
    current: ObjectID | None = tip
    while current is not None:
        chain.append(current)
        if stop and current in stop:
            break
        commit = repo.object_store[current]
        assert isinstance(commit, Commit)
        current = commit.parents[0] if commit.parents else None
    chain.reverse()
    return chain


def resolve_rev(repo: BaseRepo, rev: str) -> ObjectID:
    """The commit `rev` names: a branch, tag, remote branch, full or abbreviated commit id,
    or HEAD."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n\r "):
        raise UsageError(f"{rev!r} is not a revision")
    raw = rev.encode()
    for candidate in (raw, _HEADS + raw, b"refs/tags/" + raw, b"refs/remotes/" + raw):
        try:
            sha = repo.refs[Ref(candidate)]
        except KeyError:
            continue
        return _peel(repo, sha, rev)
    if 4 <= len(rev) <= 40 and all(c in "0123456789abcdef" for c in rev):
        if len(rev) == 40 and ObjectID(raw) in repo.object_store:
            return _peel(repo, ObjectID(raw), rev)
        matches = [sha for sha in repo.object_store if sha.startswith(raw)]
        commits = [sha for sha in matches if isinstance(repo.object_store[sha], Commit)]
        if len(commits) == 1:
            return commits[0]
        if len(commits) > 1:
            raise UsageError(f"revision {rev} is ambiguous", hint="give more digits")
    where = getattr(repo, "path", "the repository")
    raise NotFoundError(
        f"no revision {rev!r} in {where}",
        hint="use a branch name, a tag or a commit id (git log --oneline shows them)",
    )


def _peel(repo: BaseRepo, sha: ObjectID, rev: str) -> ObjectID:
    obj = repo.object_store[sha]
    while not isinstance(obj, Commit):
        target = getattr(obj, "object", None)
        if target is None:
            raise NotFoundError(f"{rev} does not name a commit")
        obj = repo.object_store[target[1]]
    return obj.id
