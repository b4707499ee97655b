"""Closing, previewing and verifying a period against a repository: the driver.

It gathers the inputs of a close from git (the usage commit, the price book of its history,
the policy, the publishers' payout methods, the previous close and its balances), runs the pure
core and, for a close, commits the result as the bot. A close records its inputs in
summary.json, which is all that `verify` needs to recompute it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.errors import FormarketError, InputError, NotFoundError, UsageError
from formarket.market.governance import bot_at
from formarket.market.history import History
from formarket.market.layout import POLICY, TRANSFERS, period_folder, transfers_path
from formarket.market.refs import branch_tip, first_parent_chain
from formarket.market.trees import commit_tree, files_under, find, list_dir, read_path
from formarket.market.writer import commit_changes
from formarket.registry.cachekey import cache_key
from formarket.registry.publishers import valid_publishers
from formarket.royalties import gitio, sent
from formarket.royalties.close import CloseContext, Closing, close_period, render_closing
from formarket.royalties.invoices import Invoicing
from formarket.royalties.money import MINOR_UNITS, to_minor_exact
from formarket.royalties.payouts import prior_balances
from formarket.royalties.tally import Tally, tally
from formarket.schemas.invoices import InvoiceIndex
from formarket.schemas.publisher import Payout
from formarket.schemas.usage import (
    Payouts,
    PolicyRef,
    PreviousClose,
    RoyaltyPolicy,
    SetAside,
    Summary,
)
from formarket.usage.committed import usage_files
from formarket.usage.files import UsageFile, month_index, parse_usage_path
from formarket.usage.partials import digest_seed, store_for, trim
from formarket.usage.reader import ScanFile, ScanSpec, close_rules, select_files
from formarket.usage.scanner import Progress, Scanner
from formarket.yamldoc import YamlError, load_yaml

__all__ = [
    "Computed",
    "Difference",
    "check_period",
    "close",
    "closed_periods",
    "closed_summary",
    "committed_invoices",
    "compute",
    "load_policy",
    "preview",
    "text_diff",
    "verify",
    "verify_all",
]

Say = Callable[[str], None]
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def _quiet(_: str) -> None:
    return None


def check_period(period: str) -> str:
    if not _PERIOD.fullmatch(period):
        raise UsageError(f"{period!r} is not a period", hint="write the month as YYYY-MM")
    return period


def load_policy(raw: bytes | None, where: str) -> RoyaltyPolicy:
    if raw is None:
        raise NotFoundError(
            f"no {POLICY} in {where}",
            hint="a maintainer commits the platform's terms first; formarket's own checkout"
            " has an example",
        )
    try:
        policy = RoyaltyPolicy.model_validate(load_yaml(raw, POLICY).data)
    except YamlError as exc:
        raise InputError(str(exc), hint="fix the YAML of the policy") from exc
    except ValidationError as exc:
        raise InputError(
            f"{POLICY} in {where} is not valid: {exc}",
            hint="see RoyaltyPolicy in formarket/schemas/usage.py for its fields",
        ) from exc
    for currency, terms in policy.currencies.items():
        if currency not in MINOR_UNITS:
            raise InputError(
                f"{POLICY}: formarket does not know the minor unit of {currency}",
                hint="add it to formarket.royalties.money.MINOR_UNITS or remove it",
            )
        to_minor_exact(terms.payout_threshold, currency)
        to_minor_exact(terms.payout_fee, currency)
    return policy


def closed_periods(history: History) -> list[str]:
    """Periods closed anywhere in the history (a commit that added royalties/YYYY-MM/
    summary.json), oldest first, whether or not the tip still holds them."""
    return sorted(history.closes)


def closed_summary(repo: BaseRepo, history: History, period: str) -> Summary:
    """The summary.json that closed `period`, as the closing commit wrote it."""
    folder = history.closes[period][1]
    raw = read_path(repo, folder, "summary.json")
    if raw is None:  # the index only records folders that hold one
        raise NotFoundError(f"period {period} is not closed", hint="close it first")
    try:
        return Summary.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(
            f"royalties/{period}/summary.json is not a summary: {exc}",
            hint="a closed period's files are written by formarket only; restore them from git",
        ) from exc


def committed_invoices(repo: BaseRepo, history: History, period: str) -> list[str] | None:
    """The hashes of the invoices that closed `period` committed (None if it committed no
    index): a verify recomputes everything else of the index, and cannot recompute them."""
    raw = read_path(repo, history.closes[period][1], "invoices.json")
    if raw is None:
        return None
    try:
        return list(InvoiceIndex.model_validate_json(raw).invoices)
    except ValidationError as exc:
        raise InputError(
            f"not an index of invoices: {exc}", hint="restore it from the commit that closed it"
        ) from exc


def _refuse_broken(history: History) -> None:
    """A closed period changed or removed after its close is an error naming the commit that
    did it, never a reason to close it again."""
    for period, position in sorted(history.broken.items()):
        closer = history.commits[history.closes[period][0]].decode()[:12]
        culprit = history.commits[position].decode()
        raise FormarketError(
            f"USG019 royalties/{period}/ was changed or removed by commit {culprit[:12]} after"
            f" {closer} closed it: a closed period never changes and is never paid again",
            hint=f"restore it: `git checkout {closer} -- royalties/{period}` and commit; see"
            " `formarket royalties verify --all`",
        )


def _methods(repo: BaseRepo, tree: ObjectID) -> dict[str, Payout | None]:
    # An invalid publisher file sets no terms: without them nothing is paid.
    return {publisher.id: publisher.payout for publisher in valid_publishers(repo, tree)}


@dataclass(frozen=True)
class Computed:
    usage_commit: ObjectID
    closing: Closing
    files: dict[str, bytes]  # by path relative to royalties/<period>/
    tally: Tally  # the period's usage, as read: what the closing was computed from


def _first_day(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


def compute(
    repo: BaseRepo,
    usage_commit: ObjectID,
    period: str,
    previous: PreviousClose | None,
    balances_tree: ObjectID,
    *,
    jobs: int | None = None,
    say: Say = _quiet,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    invoicing: Invoicing | None = None,
    invoice_hashes: Sequence[str] | None = None,
) -> Computed:
    """Close `period` from the usage and listings of `usage_commit`, after `previous`, whose
    payouts file is read from `balances_tree`. Pure in effect: writes nothing to git, only
    to the cache (the repository's, or `cache_dir`). With `invoicing`, the accounts'
    invoices too; without, the index of invoices is written only from `invoice_hashes`."""
    say(f"reading the listings' history up to {usage_commit.decode()[:12]}")
    cache = cache_dir or gitio.cache_dir_of(repo)
    book = gitio.price_book(repo, usage_commit, cache)
    history = gitio.history(repo, usage_commit, cache)
    tree = commit_tree(repo, usage_commit)
    where = f"commit {usage_commit.decode()[:12]}"
    policy = load_policy(read_path(repo, tree, POLICY), where)
    rules = close_rules(period, policy, book.known())
    old_rules = None
    old_tree = None
    prior = {}
    if previous is not None:
        if previous.usage_commit not in book.positions:
            raise InputError(
                f"the usage commit of the {previous.period} close is not in the history of {where}",
                hint="royalties are closed on one branch whose history is never rewritten",
            )
        old_tree = commit_tree(repo, ObjectID(previous.usage_commit.encode()))
        old_policy = load_policy(read_path(repo, old_tree, POLICY), "it")
        old_rules = close_rules(previous.period, old_policy, book.known(previous.usage_commit))
        # The balances the previous close committed, as it committed them: a later change
        # to its folder never resets them.
        closed = history.closes.get(previous.period)
        raw = (
            read_path(repo, closed[1], "payouts.json")
            if closed is not None
            else read_path(repo, balances_tree, f"{period_folder(previous.period)}/payouts.json")
        )
        if raw is None:
            raise NotFoundError(f"royalties/{previous.period}/payouts.json is missing")
        prior = prior_balances(Payouts.model_validate_json(raw).lines)
    key = cache_key() if cache is not None else None
    spec = ScanSpec(rules, old_rules, digest_seed(key), by_account=invoicing is not None)
    first = min(rules.first, old_rules.first if old_rules else rules.first)
    # A file written the day before the window opens may hold its first events.
    first_day = _first_day(first) - timedelta(days=1)
    old_commit = ObjectID(previous.usage_commit.encode()) if previous is not None else None
    files, blobs, extra = _scan_list(repo, tree, old_tree, first_day, history, old_commit)
    store = store_for(cache, key, spec)
    # The period's usage is a function of the files read (by blob) and the rules: a second
    # close or a verify of the same usage takes it from the cache.
    inputs = repr([(f.file.path, f.old, f.commit, b) for f, b in zip(files, blobs, strict=True)])
    inputs += repr(extra)
    # A reading by account is kept only by the close that made it: its invoices are kept in
    # the accounts database, and it is as large as the month's events.
    keeps = store is not None and not spec.by_account
    kept = store.load(inputs, "tally") if store is not None and keeps else None
    if isinstance(kept, Tally):
        say(f"the usage of {len(files)} files as read before (the cache)")
        result = kept
    else:
        say(f"reading {len(files)} usage files")
        with Scanner(repo, files, blobs, spec, jobs=jobs, store=store) as scanner:
            scans = scanner.scan(progress)
            say("settling events seen more than once")
            result = tally(files, scans, scanner.fetch, spec, extra)
        if store is not None and keeps:
            store.save(inputs, "tally", result)
        trim(cache)
    say(f"rating {len(result.usage)} listing versions")
    context = CloseContext(
        period=period,
        usage_commit=usage_commit.decode(),
        previous=previous,
        policy=policy,
        policy_ref=PolicyRef(version=policy.version, commit=book.policy_commit),
        book=book,
        methods=_methods(repo, tree),
        prior=prior,
        invoicing=invoicing.parts(period, result.accounts) if invoicing is not None else None,
    )
    closing = close_period(result, context)
    return Computed(usage_commit, closing, render_closing(closing, invoice_hashes), result)


def _originals(
    history: History, upto: int, first_day: date
) -> dict[str, tuple[UsageFile, ObjectID, int]]:
    """Each usage file as the bot first committed it, up to history position `upto`: path ->
    (file, blob, position). Usage files are append-only, so that copy is the file: a later
    rewrite or a deletion, by anyone, changes nothing a close reads."""
    chosen: dict[str, tuple[int, ObjectID]] = {}
    for (path, blob), position in history.usage.items():
        if position > upto or position in history.untrusted:
            continue
        if path not in chosen or position < chosen[path][0]:
            chosen[path] = (position, blob)
    out: dict[str, tuple[UsageFile, ObjectID, int]] = {}
    for path, (position, blob) in chosen.items():
        parsed = parse_usage_path(path)
        if parsed is not None and parsed.day >= first_day:
            out[path] = (parsed, blob, position)
    return out


def _scan_list(
    repo: BaseRepo,
    tree: ObjectID,
    old_tree: ObjectID | None,
    first_day: date,
    history: History,
    old_commit: ObjectID | None,
) -> tuple[list[ScanFile], list[ObjectID], list[SetAside]]:
    """The files to read, each as the bot first committed it, with the place in history of
    the commit that brought it: those the previous close read (old) and those new since.
    What else happened to usage files since the previous close is reported once, by the
    close that first sees it: copies brought by a commit not the bot's (USG017), files
    deleted (USG016) or rewritten (USG015)."""
    upto = len(history.commits) - 1
    since = history.commits.index(old_commit) if old_commit is not None else -1
    new = _originals(history, upto, first_day)
    old = _originals(history, since, first_day) if old_commit is not None else {}
    extra: list[SetAside] = []
    for (path, _blob), position in sorted(history.usage.items()):
        problem = history.untrusted.get(position)
        parsed = parse_usage_path(path)
        if problem is None or not since < position <= upto:
            continue
        if parsed is None or parsed.day < first_day:
            continue
        commit = history.commits[position].decode()
        extra.append(
            SetAside(
                code="USG017",
                file=path,
                line=0,
                message=f"brought by commit {commit}, {problem}: not counted",
            )
        )
    at_tip, bad = usage_files(repo, tree, first_day)
    at_old, old_bad = usage_files(repo, old_tree, first_day) if old_tree else ({}, {})
    for path in sorted(at_old):
        if path in new and path not in at_tip:
            extra.append(
                SetAside(
                    code="USG016",
                    file=path,
                    line=0,
                    message="deleted after the previous close read it: usage files are"
                    " append-only; the copy the bot committed is still read from git",
                )
            )
    for path, (_, blob) in sorted(at_tip.items()):
        original = new.get(path)
        changed = original is not None and original[1] != blob
        trusted_change = history.untrusted.get(history.usage.get((path, blob), -1)) is None
        if changed and trusted_change and at_old.get(path, (None, None))[1] != blob:
            extra.append(
                SetAside(
                    code="USG015",
                    file=path,
                    line=0,
                    message="rewritten after the bot committed it: usage files are"
                    " append-only; the copy the bot first committed is the one read",
                )
            )
    files, blobs, more = select_files(
        {p: (f, b) for p, (f, b, _) in new.items()},
        bad,
        {p: (f, b) for p, (f, b, _) in old.items()},
        old_bad,
    )
    placed = [
        ScanFile(item.file, item.old, new[item.file.path][2])
        for item, blob in zip(files, blobs, strict=True)
    ]
    return placed, blobs, [*extra, *more]


def _previous(repo: BaseRepo, history: History, period: str) -> PreviousClose | None:
    _refuse_broken(history)
    closed = closed_periods(history)
    if period in closed:
        raise UsageError(
            f"{period} is closed already; a closed period never changes",
            hint=f"check it with `formarket royalties verify --period {period}`; late usage"
            " goes into the next open period as adjustments",
        )
    later = [p for p in closed if p > period]
    if later:
        raise UsageError(
            f"{later[-1]} is closed already, so {period} can no longer be closed",
            hint=f"usage of {period} that is not counted yet goes into the next open period"
            " as adjustments",
        )
    if not closed:
        return None
    last = closed[-1]
    return PreviousClose(period=last, usage_commit=closed_summary(repo, history, last).usage_commit)


def preview(
    repo: BaseRepo,
    period: str,
    *,
    branch: str = "main",
    jobs: int | None = None,
    say: Say = _quiet,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    invoicing: Invoicing | None = None,
) -> Computed:
    """What closing `period` now would give; nothing is written (but to the cache)."""
    check_period(period)
    tip = branch_tip(repo, branch)
    tree = commit_tree(repo, tip)
    previous = _previous(repo, gitio.history(repo, tip, gitio.cache_dir_of(repo)), period)
    return compute(
        repo,
        tip,
        period,
        previous,
        tree,
        jobs=jobs,
        say=say,
        progress=progress,
        cache_dir=cache_dir,
        invoicing=invoicing,
    )


def close(
    repo: BaseRepo,
    period: str,
    *,
    branch: str = "main",
    commit: bool = False,
    now: datetime | None = None,
    jobs: int | None = None,
    say: Say = _quiet,
    progress: Progress | None = None,
    invoicing: Invoicing | None = None,
) -> tuple[Computed, ObjectID | None]:
    """Close `period` from the tip of `branch`; with `commit`, commit royalties/<period>/ as
    the bot. Returns what was computed and the new commit (None without `commit`). With
    `invoicing`, the accounts' invoices are computed too, and their index committed: the
    caller keeps the invoices themselves (they are private)."""
    check_period(period)
    moment = now or datetime.now(UTC)
    ends = _first_day(month_index(period) + 1)
    if moment.date() < ends:
        raise UsageError(
            f"{period} is not over until {ends} (UTC)",
            hint=f"see where it stands with `formarket royalties preview --period {period}`",
        )
    computed = preview(
        repo, period, branch=branch, jobs=jobs, say=say, progress=progress, invoicing=invoicing
    )
    if not commit:
        return computed, None
    tip = computed.usage_commit
    bot = bot_at(repo, tip)
    wanted = {f"{period_folder(period)}/{rel}": data for rel, data in computed.files.items()}

    def changes(current: ObjectID | None) -> dict[str, bytes | None]:
        if current is not None and read_path(
            repo, commit_tree(repo, current), f"{period_folder(period)}/summary.json"
        ):
            raise FormarketError(
                f"{period} was closed by someone else meanwhile",
                hint=f"check it with `formarket royalties verify --period {period}`",
            )
        return dict(wanted)

    statements = len(computed.closing.statements)
    message = (
        f"Close royalties {period}: {statements} statements from usage up to"
        f" {tip.decode()[:12]}\n\nComputed by `formarket royalties close`; recompute and compare"
        f" with `formarket royalties verify --period {period}`.\n"
    )
    new = commit_changes(repo, branch, changes, message, bot)
    return computed, new


@dataclass(frozen=True)
class Difference:
    path: str
    problem: str
    diff: str = ""


def verify(
    repo: BaseRepo,
    period: str,
    *,
    branch: str = "main",
    jobs: int | None = None,
    say: Say = _quiet,
    progress: Progress | None = None,
) -> list[Difference]:
    """Recompute a closed period from the inputs its summary records and compare every file
    with what its close committed, then with what the tip holds, and check the record of its
    transfers against it; an empty list means they agree byte for byte. The close is found
    in history, so a period removed or changed since is a difference that names the commit
    which did it."""
    check_period(period)
    tip = branch_tip(repo, branch)
    history = gitio.history(repo, tip, gitio.cache_dir_of(repo))
    if period not in history.closes:
        raise NotFoundError(f"period {period} is not closed", hint="close it first")
    return _verify_closed(repo, history, tip, period, branch, jobs, say, progress)


def verify_all(
    repo: BaseRepo,
    *,
    branch: str = "main",
    jobs: int | None = None,
    say: Say = _quiet,
    progress: Progress | None = None,
) -> dict[str, list[Difference]]:
    """`verify` of every period closed in the history of `branch`, oldest first; a record of
    transfers that no close stands behind is a difference too, under its own name."""
    tip = branch_tip(repo, branch)
    history = gitio.history(repo, tip, gitio.cache_dir_of(repo))
    found = {
        period: _verify_closed(repo, history, tip, period, branch, jobs, say, progress)
        for period in closed_periods(history)
    }
    folder = find(repo, commit_tree(repo, tip), TRANSFERS, folder=True)
    for name in sorted(list_dir(repo, folder, "") if folder is not None else {}):
        period = name.removesuffix(".json")
        if period not in history.closes:
            found[period] = [
                Difference(
                    f"{TRANSFERS}/{name}",
                    "no close of this period is in the history: no payout was due for it",
                )
            ]
    return found


def _verify_closed(
    repo: BaseRepo,
    history: History,
    tip: ObjectID,
    period: str,
    branch: str,
    jobs: int | None,
    say: Say,
    progress: Progress | None,
) -> list[Difference]:
    base = period_folder(period)
    where = f"{base}/summary.json"
    position = history.closes[period][0]
    closer = history.commits[position]
    differences: list[Difference] = []
    try:
        summary = closed_summary(repo, history, period)
    except InputError as exc:
        # The record of the inputs is broken: nothing can be recomputed from it.
        return [*differences, Difference(where, exc.message)]
    usage_commit = ObjectID(summary.usage_commit.encode())
    if usage_commit not in repo.object_store:
        return [
            *differences,
            Difference(where, f"its usage commit {summary.usage_commit[:12]} does not exist"),
        ]
    chain = first_parent_chain(repo, closer, stop={usage_commit})
    if chain[0] != usage_commit:
        return [
            *differences,
            Difference(
                where,
                f"its usage commit {summary.usage_commit[:12]} is not in the history of {branch}"
                f" before the close {closer.decode()[:12]}",
            ),
        ]
    earlier = [p for p in closed_periods(history) if p < period]
    expected = (
        PreviousClose(
            period=earlier[-1],
            usage_commit=closed_summary(repo, history, earlier[-1]).usage_commit,
        )
        if earlier
        else None
    )
    if expected != summary.previous_close:
        differences.append(
            Difference(where, "the previous close it records is not the one committed before it")
        )
    try:
        hashes = committed_invoices(repo, history, period)
    except InputError as exc:
        differences.append(Difference(f"{base}/invoices.json", exc.message))
        hashes = None
    try:
        computed = compute(
            repo,
            usage_commit,
            period,
            summary.previous_close,
            commit_tree(repo, closer),
            jobs=jobs,
            say=say,
            progress=progress,
            invoice_hashes=hashes,
        )
    except FormarketError as exc:
        return [*differences, Difference(where, f"cannot be recomputed: {exc.message}")]
    closed = files_under(repo, commit_tree(repo, closer), base)
    differences.extend(_compare(computed.files, closed, base, ""))
    # The payouts as sent, beside the closed folder: only what this close paid, as it paid it.
    record = transfers_path(period)
    differences.extend(
        Difference(record, problem)
        for problem in sent.record_problems(repo, closer, tip, period, computed.closing.payouts)
    )
    broken = history.broken.get(period)
    if broken is not None:
        # The tip must still hold what the close committed (and recomputes).
        culprit = history.commits[broken].decode()
        at_tip = files_under(repo, commit_tree(repo, tip), base)
        differences.extend(
            _compare(
                computed.files,
                at_tip,
                base,
                f" at the tip (USG019): commit {culprit} changed it after"
                f" {closer.decode()[:12]} closed {period}",
            )
        )
    return differences


def _compare(
    wanted: dict[str, bytes], found: dict[str, bytes], base: str, where: str
) -> list[Difference]:
    out = []
    for rel in sorted(set(found) | set(wanted)):
        path = f"{base}/{rel}"
        mine, theirs = wanted.get(rel), found.get(rel)
        if theirs is None:
            out.append(Difference(path, f"missing from the repository{where}"))
        elif mine is None:
            out.append(Difference(path, f"not part of a close: added by hand{where}"))
        elif mine != theirs:
            out.append(
                Difference(
                    path, f"differs from the recomputed file{where}", text_diff(theirs, mine, path)
                )
            )
    return out


def text_diff(committed: bytes, recomputed: bytes, path: str, limit: int = 40) -> str:
    lines = list(
        difflib.unified_diff(
            committed.decode("utf-8", "replace").splitlines(),
            recomputed.decode("utf-8", "replace").splitlines(),
            f"{path} (committed)",
            f"{path} (recomputed)",
            lineterm="",
            n=1,
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... {len(lines) - limit} more diff lines"]
    return "\n".join(lines)
