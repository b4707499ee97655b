"""The record of a period's transfers in git (`royalties/transfers/YYYY-MM.json`): reading
it, and checking its whole history against the close.

    read_record(repo, tree, period) -> Transfers | None
    record_problems(repo, closer, tip, period, payouts) -> [problem]

Only the bot writes the record, and only by appending: every commit after the close that
changed it must be the bot's (judged as usage is: author, committer and, once governance.yaml
names its key, signature), and each version must keep every attempt of the one before. The
version at the tip must pass `transfers.check` against the payouts the close computed.
"""

from __future__ import annotations

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.errors import InputError
from formarket.market.history import bot_problem
from formarket.market.layout import transfers_path
from formarket.market.refs import first_parent_chain
from formarket.market.trees import commit_tree, find, read_blob, read_path
from formarket.royalties.transfers import check, extends
from formarket.schemas.transfers import Transfers
from formarket.schemas.usage import Payouts

__all__ = ["parse_record", "read_record", "record_problems"]


def parse_record(raw: bytes, period: str) -> Transfers:
    """A record's bytes as a record; InputError, with where and what to do, when they are not."""
    path = transfers_path(period)
    try:
        return Transfers.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise InputError(
            f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))",
            hint="the bot alone writes this file; restore it from git (`git log -p --"
            f" {path}`) and let `formarket royalties pay` add to it",
        ) from exc


def read_record(repo: BaseRepo, tree: ObjectID, period: str) -> Transfers | None:
    raw = read_path(repo, tree, transfers_path(period))
    return parse_record(raw, period) if raw is not None else None


def record_problems(
    repo: BaseRepo, closer: ObjectID, tip: ObjectID, period: str, payouts: Payouts
) -> list[str]:
    """What is wrong with the record of `period` between its close `closer` and `tip`."""
    path = transfers_path(period)
    problems: list[str] = []
    previous_blob: ObjectID | None = None
    previous: Transfers | None = None
    for commit_id in first_parent_chain(repo, tip, stop={closer}):
        blob = find(repo, commit_tree(repo, commit_id), path, folder=False)
        if blob == previous_blob:
            continue
        short = commit_id.decode()[:12]
        if commit_id == closer:
            problems.append(f"committed with the close {short}: transfers come after a close")
        elif who := bot_problem(repo, commit_id):
            problems.append(f"changed by commit {short}, {who}: only the bot records transfers")
        if blob is None:
            problems.append(f"removed by commit {short}: the record of what was sent is kept")
            previous_blob, previous = None, None
            continue
        try:
            record = parse_record(read_blob(repo, blob), period)
        except InputError as exc:
            problems.append(f"as commit {short} left it: {exc.message}")
            previous_blob, previous = blob, None
            continue
        if previous is not None and (changed := extends(previous, record)) is not None:
            problems.append(f"commit {short} did not only add to it: {changed}")
        previous_blob, previous = blob, record
    if previous is not None:
        problems.extend(check(previous, payouts))
    return problems
