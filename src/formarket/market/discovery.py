"""Finding the repository that holds a folder, as git does: the folder itself or the first
folder above it that holds one.

From the file system alone, without loading a git library, so that `formarket validate` run in
a listing's folder finds the registry's top as quickly as it reads a working tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from formarket.errors import NotFoundError

__all__ = ["HINT", "find_repository"]

HINT = "run it inside the marketplace's clone, or pass --repo (or set FORMARKET_REPO) to it"


def _holds_repository(folder: Path) -> bool:
    """A working tree's top (it holds `.git`: a folder, or a linked worktree's file) or a bare
    repository."""
    if (folder / ".git").exists():
        return True
    return (folder / "HEAD").is_file() and (folder / "objects").is_dir()


def find_repository(where: Path | str | None = None, *, search_up: bool = True) -> Path:
    """The folder of the repository that holds `where` (default: the current folder): a
    working tree's top, or a bare repository. Without `search_up`, only `where` itself."""
    start = Path(where if where is not None else os.curdir).absolute()
    if not start.is_dir():
        raise NotFoundError(f"no folder {start}", hint=HINT)
    for folder in (start, *start.parents) if search_up else (start,):
        if _holds_repository(folder):
            return folder
    raise NotFoundError(
        f"{start} is not inside a git repository"
        if search_up
        else f"{start} is not a git repository",
        hint=HINT,
    )
