"""Opening the marketplace repository, from any folder inside it, as git does."""

from __future__ import annotations

from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from formarket.errors import NotFoundError
from formarket.market.discovery import find_repository

__all__ = ["create_repository", "open_repository"]


def open_repository(where: Path | str | None = None, *, search_up: bool = True) -> Repo:
    """The repository that holds `where` (default: the current folder): the first of it and
    the folders above it that holds one. Without `search_up`, only `where` itself."""
    folder = find_repository(where, search_up=search_up)
    try:
        return Repo(str(folder))
    except NotGitRepository as exc:
        raise NotFoundError(
            f"{folder} holds a damaged git repository: {exc}",
            hint="check it with `git status` there",
        ) from exc


def create_repository(path: Path, *, branch: str = "main", bare: bool = False) -> Repo:
    """A new, empty repository at `path` (made if needed) whose HEAD names `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    if bare:
        return Repo.init_bare(str(path), default_branch=branch.encode())
    return Repo.init(str(path), default_branch=branch.encode())
