"""Usage files in a commit: which files under registry/usage/ a reading takes, found from git
objects only, skipping whole years, months and days before the first day that matters.
"""

from __future__ import annotations

from datetime import date

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo

from formarket.market.trees import find, list_dir
from formarket.usage.files import USAGE_ROOT, UsageFile, parse_usage_path

__all__ = ["usage_files"]


def usage_files(
    repo: BaseRepo, tree_id: ObjectID, first_day: date
) -> tuple[dict[str, tuple[UsageFile, ObjectID]], dict[str, ObjectID]]:
    """Usage files of a commit written on or after `first_day`: (path -> (file, blob)), and
    the files under registry/usage/ whose path is not a usage file's (path -> blob)."""
    good: dict[str, tuple[UsageFile, ObjectID]] = {}
    bad: dict[str, ObjectID] = {}
    root = find(repo, tree_id, USAGE_ROOT, folder=True)
    if root is None:
        return good, bad
    stack: list[tuple[str, ObjectID, int]] = [(USAGE_ROOT, root, 0)]
    while stack:
        path, tree, depth = stack.pop()
        for name, (is_dir, sha) in list_dir(repo, tree, "").items():
            child = f"{path}/{name}"
            if is_dir:
                # Skip whole years, months and days before the first day that matters.
                if depth < 3 and _before(child, depth, first_day):
                    continue
                stack.append((child, sha, depth + 1))
                continue
            parsed = parse_usage_path(child)
            if parsed is None:
                bad[child] = sha
            elif parsed.day >= first_day:
                good[child] = (parsed, sha)
    return good, bad


def _before(path: str, depth: int, first_day: date) -> bool:
    parts = path.split("/")[2:]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        return False
    bound = (first_day.year, first_day.month, first_day.day)[: depth + 1]
    return tuple(numbers) < bound
