"""The real git command line, for what only it can say: how `git status` sees a working clone
after formarket wrote to it."""

from __future__ import annotations

from pathlib import Path

from formarket.process import Runner

_RUNNER = Runner()
# Fixed settings, so that a user's or the machine's git configuration changes nothing here.
_CONFIG = (
    "-c",
    "user.name=Local Person",
    "-c",
    "user.email=person@example.org",
    "-c",
    "core.autocrlf=false",
)


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; its standard output."""
    return _RUNNER.run(["git", *_CONFIG, *args], cwd=cwd).stdout


def clone(origin: Path, work: Path, branch: str = "main") -> Path:
    """A working clone of `origin` at `work`, with `branch` checked out."""
    git(work.parent, "clone", "--quiet", "--branch", branch, str(origin), str(work))
    return work


def status(work: Path) -> list[str]:
    """`git status --porcelain` of a working clone, untracked files one by one; empty when
    the working tree and the index match HEAD."""
    return git(work, "status", "--porcelain", "--untracked-files=all").splitlines()


def head(work: Path) -> str:
    return git(work, "rev-parse", "HEAD").strip()
