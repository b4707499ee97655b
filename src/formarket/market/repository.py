"""Opening the marketplace repository, from any folder inside it, as git does."""

from __future__ import annotations

import os
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from formarket.errors import NotFoundError

__all__ = ["create_repository", "open_repository", "top_folder"]

_HINT = "run it inside the marketplace's clone, or pass --repo (or set FORMARKET_REPO) to it"


def _holds_repository(folder: Path) -> bool:
    """A working tree's top (it holds `.git`, a folder or a linked worktree's file) or a bare
    repository."""
    if (folder / ".git").exists():
        return True
    return (folder / "HEAD").is_file() and (folder / "objects").is_dir()


def open_repository(where: Path | str | None = None, *, search_up: bool = True) -> Repo:
    """The repository that holds `where` (default: the current folder): the first of it and
    the folders above it that holds one. Without `search_up`, only `where` itself."""
    start = Path(where if where is not None else os.curdir).absolute()
    if not start.is_dir():
        raise NotFoundError(f"no folder {start}", hint=_HINT)
    for folder in (start, *start.parents) if search_up else (start,):
        if not _holds_repository(folder):
            continue
        try:
            return Repo(str(folder))
        except NotGitRepository as exc:
            raise NotFoundError(
                f"{folder} holds a damaged git repository: {exc}",
                hint="check it with `git status` there",
            ) from exc
    raise NotFoundError(
        f"{start} is not inside a git repository"
        if search_up
        else f"{start} is not a git repository",
        hint=_HINT,
    )


def create_repository(path: Path, *, branch: str = "main", bare: bool = False) -> Repo:
    """A new, empty repository at `path` (made if needed) whose HEAD names `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    if bare:
        return Repo.init_bare(str(path), default_branch=branch.encode())
    return Repo.init(str(path), default_branch=branch.encode())


def top_folder(repo: Repo) -> Path:
    """The working tree's top folder (for a bare repository, the repository's own)."""
    return Path(repo.path)
