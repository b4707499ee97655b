"""What the first-parent history of a branch says about usage and closes: which commit first
brought each usage file, whether that commit was the bot's, and which commit closed each
period and which, if any, changed it afterwards.

    History                  the index, up to one commit
    extend(repo, h, tip)     the index up to `tip`, walking only the commits `h` has not seen

The walk compares each commit's registry/usage/ and royalties/ folders with its first
parent's, descending only into subfolders whose ids differ, so a commit costs what it changed.
Usage in a commit is the bot's when its author and committer are the bot that
registry/governance.yaml names just before it (in its first parent; the root commit names its
own) and, when that file names the bot's key, the commit is signed with it (`sshsig`): a commit
never vouches for itself by changing governance.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dulwich.objects import Commit, ObjectID
from dulwich.repo import BaseRepo

from formarket.errors import InputError
from formarket.market.governance import bot_of, read_governance
from formarket.market.layout import ROYALTIES, USAGE
from formarket.market.refs import first_parent_chain
from formarket.market.sshsig import parse_public_line, signed_by
from formarket.market.trees import commit_tree, find, list_dir

__all__ = ["History", "bot_problem", "extend"]

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


@dataclass
class History:
    """The index of a first-parent history, oldest commit first.

    `usage` maps (path, blob) of every usage file that ever appeared to the position of the
    commit that first brought it; `untrusted` maps such a commit's position to why its usage
    does not count. `closes` maps a period to (position, folder id) of the commit that first
    committed its summary.json; `broken` maps a closed period whose folder now differs from
    that close to the position of the commit that changed or removed it."""

    commits: list[ObjectID] = field(default_factory=list)
    usage: dict[tuple[str, ObjectID], int] = field(default_factory=dict)
    untrusted: dict[int, str] = field(default_factory=dict)
    closes: dict[str, tuple[int, ObjectID]] = field(default_factory=dict)
    broken: dict[str, int] = field(default_factory=dict)
    usage_tree: ObjectID | None = None
    royalties_tree: ObjectID | None = None

    @property
    def tip(self) -> ObjectID | None:
        return self.commits[-1] if self.commits else None

    def copy(self) -> History:
        return History(
            list(self.commits),
            dict(self.usage),
            dict(self.untrusted),
            dict(self.closes),
            dict(self.broken),
            self.usage_tree,
            self.royalties_tree,
        )


def extend(repo: BaseRepo, history: History | None, tip: ObjectID) -> History:
    """The index of `tip`'s first-parent history, from `history` when its tip is on it (a new
    index otherwise). `history` is left as it was."""
    start = history.tip if history is not None else None
    chain = first_parent_chain(repo, tip, stop={start} if start is not None else None)
    if history is not None and start is not None and chain[0] == start:
        out = history.copy()
        chain = chain[1:]
    else:
        out = History()
    judge = _Judge(repo)
    for commit_id in chain:
        position = len(out.commits)
        out.commits.append(commit_id)
        tree = commit_tree(repo, commit_id)
        usage_tree = find(repo, tree, USAGE, folder=True)
        if usage_tree != out.usage_tree:
            added = _added_files(repo, out.usage_tree, usage_tree, USAGE)
            fresh = [key for key in added if key not in out.usage]
            for key in fresh:
                out.usage[key] = position
            if fresh:
                problem = judge.problem(commit_id)
                if problem:
                    out.untrusted[position] = problem
            out.usage_tree = usage_tree
        royalties_tree = find(repo, tree, ROYALTIES, folder=True)
        if royalties_tree != out.royalties_tree:
            _closes(repo, out, position, out.royalties_tree, royalties_tree)
            out.royalties_tree = royalties_tree
    return out


def _added_files(
    repo: BaseRepo, old: ObjectID | None, new: ObjectID | None, path: str
) -> list[tuple[str, ObjectID]]:
    """(path, blob) of the files in tree `new` that tree `old` does not hold as they are."""
    if new is None or new == old:
        return []
    before = list_dir(repo, old, "") if old is not None else {}
    out: list[tuple[str, ObjectID]] = []
    for name, (is_dir, sha) in sorted(list_dir(repo, new, "").items()):
        previous = before.get(name)
        if previous == (is_dir, sha):
            continue
        child = f"{path}/{name}"
        if is_dir:
            old_sub = previous[1] if previous is not None and previous[0] else None
            out.extend(_added_files(repo, old_sub, sha, child))
        else:
            out.append((child, sha))
    return out


def _closes(
    repo: BaseRepo, out: History, position: int, old: ObjectID | None, new: ObjectID | None
) -> None:
    before = list_dir(repo, old, "") if old is not None else {}
    after = list_dir(repo, new, "") if new is not None else {}
    for name in sorted(set(before) | set(after)):
        if not _PERIOD.fullmatch(name) or before.get(name) == after.get(name):
            continue
        is_dir, sha = after.get(name, (False, None))
        folder = sha if is_dir else None
        closed = out.closes.get(name)
        if closed is None:
            if folder is not None and "summary.json" in list_dir(repo, folder, ""):
                out.closes[name] = (position, folder)
            continue
        if folder == closed[1]:
            out.broken.pop(name, None)  # put back exactly as it was closed
        else:
            out.broken.setdefault(name, position)


def bot_problem(repo: BaseRepo, commit_id: ObjectID) -> str:
    """Why `commit_id` is not the bot's commit, as usage is judged; "" when it is."""
    return _Judge(repo).problem(commit_id)


class _Judge:
    """Whether a commit's usage is the bot's (asked only of commits that bring usage)."""

    def __init__(self, repo: BaseRepo) -> None:
        self.repo = repo

    def problem(self, commit_id: ObjectID) -> str:
        """Why the usage `commit_id` brings does not count; "" when it is the bot's."""
        commit = self.repo.object_store[commit_id]
        assert isinstance(commit, Commit)
        rules_at = commit.parents[0] if commit.parents else commit_id
        try:
            governance = read_governance(self.repo, rules_at)
        except InputError as exc:
            return f"no valid governance.yaml names the bot before it ({exc.message})"
        bot = bot_of(governance).raw()
        if commit.author != bot or commit.committer != bot:
            who = commit.author.decode("utf-8", "replace")
            return f"committed by {who}, not the bot ({bot.decode()})"
        if governance.bot_key is None:
            return ""
        key = parse_public_line(governance.bot_key)
        if key is None:
            return "governance.yaml's bot_key is not an ed25519 public key"
        if not commit.gpgsig:
            return "not signed, and governance.yaml names the bot's key"
        if not signed_by(commit, key):
            return "not signed by the bot's key that governance.yaml names"
        return ""
