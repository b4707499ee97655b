"""`formarket royalties`: close a period, preview an open one, verify a closed one."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket.commands._common import open_repo
from formarket.commands._options import BRANCH_OPTION, GATEWAY_DIR_OPTION, REPO_OPTION
from formarket.errors import UsageError

if TYPE_CHECKING:
    from dulwich.objects import ObjectID
    from dulwich.repo import BaseRepo
    from sqlalchemy.engine import Engine

    from formarket.accounts.invoices import InvoiceStore
    from formarket.control.invoicing import Reconciled
    from formarket.control.payouts import PayReport
    from formarket.royalties.engine import Computed

__all__ = ["command"]

_PERIOD = click.option(
    "--period", required=True, metavar="YYYY-MM", help="The month, in UTC, such as 2026-01."
)
_JOBS = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes to read usage with (default: one per core).",
)


def _say(message: str) -> None:
    click.echo(message, err=True)


class _Progress:
    """Reading usage can take a minute: say how far it got, every two seconds at most."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int, events: int) -> None:
        now = time.monotonic()
        if done == total or now - self.last >= 2:
            self.last = now
            click.echo(f"  read {done:,}/{total:,} usage files, {events:,} events", err=True)


@click.group("royalties")
def command() -> None:
    """Royalties: from the usage committed to git to statements, a ledger and payouts.

    \b
    A period is a calendar month in UTC. Usage is read from registry/usage/ in git objects;
    each event is rated with the terms of the listing version that served it, split between
    its creator (the listing's royalty_percent) and the platform, and posted to a double-entry
    ledger. Statements per publisher, the ledger, payouts and a summary go to
    royalties/YYYY-MM/, committed by the bot. The terms are in royalties/policy.yaml.

    \b
      formarket royalties preview --period 2026-02     an open period, as it stands
      formarket royalties close --period 2026-01 --commit
      formarket royalties verify --period 2026-01      recompute and compare, byte for byte
      formarket royalties verify --all                 every period closed in history
      formarket royalties pay --period 2026-01         send its payouts (payment provider)
      formarket royalties reissue-invoices --period 2026-01   keep its invoices again
      formarket royalties payouts --period 2026-01     each payout line and its transfer
    """


@command.command("close")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
@GATEWAY_DIR_OPTION
@click.option("--commit", is_flag=True, help="Commit royalties/YYYY-MM/ as the bot.")
@click.option(
    "--invoices/--no-invoices",
    default=None,
    help="Compute each account's invoice from the accounts database (FORMARKET_DATABASE_URL,"
    " else accounts.sqlite in the gateway's folder), commit their index and keep them there"
    " (default: with --commit).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write the files to this folder, to read them before committing.",
)
@_JOBS
def close_command(
    period: str,
    repo: Path,
    branch: str,
    gateway_dir: Path | None,
    commit: bool,
    invoices: bool | None,
    out: Path | None,
    jobs: int | None,
) -> None:
    """Close a finished period: rate its usage, split it, post the ledger, write statements
    and payouts, and each account's invoice.

    Without --commit nothing is written to git: the result is shown, and written to --out if
    given. A closed period never changes; usage that arrives for it later is posted as an
    adjustment in the next period that is closed.

    \b
    Invoices are private: the close commits only their SHA-256 hashes and totals
    (royalties/YYYY-MM/invoices.json), which equal the statements' gross; the invoices stay
    in the accounts database, where each account reads its own. Each account's balance is
    then reconciled with its invoice, and the differences are shown.

    \b
    Exit status: 0 closed (or would close), 1 an error, 2 bad usage (a period not over, or
    closed already).
    """
    from formarket.royalties import engine

    with_invoices = commit if invoices is None else invoices
    repository = open_repo(repo)
    try:
        if with_invoices:
            computed, new = _close_with_invoices(
                repository, period, repo, gateway_dir, branch, commit, jobs
            )
        else:
            computed, new = engine.close(
                repository,
                period,
                branch=branch,
                commit=commit,
                jobs=jobs,
                say=_say,
                progress=_Progress(),
            )
    finally:
        repository.close()
    _show(computed.files, out)
    if new is None:
        click.echo(f"\nnot committed (dry run): add --commit to commit royalties/{period}/")
    else:
        click.echo(
            f"\ncommitted royalties/{period}/ ({len(computed.files)} files) to {branch}"
            f" as {new.decode()[:12]}"
        )
        if with_invoices:
            click.echo(f"kept {len(computed.closing.invoices)} invoices in the accounts database")


@contextmanager
def _accounts(repo: Path, gateway_dir: Path | None) -> Iterator[tuple[Engine, InvoiceStore]]:
    """The accounts database (FORMARKET_DATABASE_URL, else in the gateway's folder) and its
    invoices, named by the pseudonyms of the key there."""
    from formarket.accounts.database import database_url, open_database
    from formarket.accounts.invoices import InvoiceStore
    from formarket.accounts.pseudonym import load_pseudonyms
    from formarket.commands.gateway import state_paths

    paths = state_paths(repo, gateway_dir)
    database = open_database(database_url(paths.root))
    try:
        yield database, InvoiceStore(database, load_pseudonyms(paths.root))
    finally:
        database.dispose()


def _close_with_invoices(
    repository: BaseRepo,
    period: str,
    repo: Path,
    gateway_dir: Path | None,
    branch: str,
    commit: bool,
    jobs: int | None,
) -> tuple[Computed, ObjectID | None]:
    from formarket.accounts.credit import CreditStore
    from formarket.accounts.store import AccountStore
    from formarket.control.invoicing import close_with_invoices, reconcile

    with _accounts(repo, gateway_dir) as (database, store):
        computed, new = close_with_invoices(
            repository,
            period,
            store,
            store.pseudonyms,
            branch=branch,
            commit=commit,
            jobs=jobs,
            say=_say,
            progress=_Progress(),
        )
        if new is not None:
            _show_reconciled(reconcile(AccountStore(database), store, CreditStore(database)))
        return computed, new


@command.command("reissue-invoices")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
@GATEWAY_DIR_OPTION
@_JOBS
def reissue_command(
    period: str, repo: Path, branch: str, gateway_dir: Path | None, jobs: int | None
) -> None:
    """Keep a closed period's invoices again, when its close was committed but they were not
    kept (the process stopped between the two).

    \b
    They are computed again from the inputs the close recorded and the accounts database,
    and kept only if every one is an invoice whose SHA-256 the close committed: an invoice
    never differs from its hash in git.

    \b
    Exit status: 0 kept, 1 an error (nothing kept).
    """
    from formarket.control.invoicing import reissue

    repository = open_repo(repo)
    try:
        with _accounts(repo, gateway_dir) as (_, store):
            kept = reissue(
                repository,
                period,
                store,
                store.pseudonyms,
                branch=branch,
                jobs=jobs,
                say=_say,
                progress=_Progress(),
            )
    finally:
        repository.close()
    click.echo(f"kept {kept} invoices of {period}, each one whose SHA-256 its close committed")


def _show_reconciled(found: list[Reconciled]) -> None:
    differing = [r for r in found if r.difference]
    click.echo(
        f"\nbalances reconciled with their latest invoice: {len(found) - len(differing)} agree,"
        f" {len(differing)} differ"
    )
    for r in differing:
        click.echo(
            f"  {r.login}: {r.by_the_books} by the {r.period} invoice, {r.in_the_database} in"
            f" the database ({r.difference:+}: use since the period ended, or rounding)"
        )


@command.command("preview")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
@click.option(
    "--publisher", default=None, help="Show this publisher's statement instead of the summary."
)
@_JOBS
def preview_command(
    period: str, repo: Path, branch: str, publisher: str | None, jobs: int | None
) -> None:
    """Show what closing a period now would give, for an open period (even an unfinished
    one). Nothing is written."""
    from formarket.royalties import engine

    repository = open_repo(repo)
    try:
        computed = engine.preview(
            repository, period, branch=branch, jobs=jobs, say=_say, progress=_Progress()
        )
    finally:
        repository.close()
    if publisher is None:
        click.echo(computed.files["README.md"].decode(), nl=False)
        return
    page = computed.files.get(f"statements/{publisher}.md")
    if page is None:
        names = sorted(
            p.removeprefix("statements/").removesuffix(".md")
            for p in computed.files
            if p.startswith("statements/") and p.endswith(".md")
        )
        raise UsageError(
            f"{publisher} has no statement for {period}",
            hint=f"publishers with one: {', '.join(names) or 'none'}",
        )
    click.echo(page.decode(), nl=False)


@command.command("verify")
@click.option(
    "--period", default=None, metavar="YYYY-MM", help="The closed month to check, such as 2026-01."
)
@click.option(
    "--all", "every", is_flag=True, help="Check every period closed in the branch's history."
)
@REPO_OPTION
@BRANCH_OPTION
@_JOBS
def verify_command(
    period: str | None, every: bool, repo: Path, branch: str, jobs: int | None
) -> None:
    """Recompute a closed period from git and compare it with what its close committed and
    with what the branch holds now, byte for byte. Closes are found in the branch's history:
    a closed period that a later commit changed or removed is a difference (USG019) naming
    that commit.

    \b
    Exit status: 0 every file agrees, 1 any difference (each is listed, with a diff).
    """
    from formarket.royalties import engine

    if (period is None) == (not every):
        raise UsageError(
            "give one of --period YYYY-MM and --all",
            hint="`formarket royalties verify --all` checks every closed period",
        )
    repository = open_repo(repo)
    try:
        if every:
            found = engine.verify_all(
                repository, branch=branch, jobs=jobs, say=_say, progress=_Progress()
            )
        else:
            assert period is not None
            found = {
                period: engine.verify(
                    repository, period, branch=branch, jobs=jobs, say=_say, progress=_Progress()
                )
            }
    finally:
        repository.close()
    if not found:
        click.echo("no period is closed in the history of the branch")
        return
    failed = 0
    for month, differences in found.items():
        if not differences:
            click.echo(f"royalties/{month}/ agrees with its recomputation, byte for byte")
            continue
        failed += 1
        for difference in differences:
            click.echo(f"{difference.path}: {difference.problem}")
            if difference.diff:
                click.echo(difference.diff)
        click.echo(f"{len(differences)} difference(s): royalties/{month}/ does not verify")
    if failed:
        sys.exit(1)


@command.command("pay")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
@click.option(
    "--skip-verify",
    is_flag=True,
    help="Send without recomputing the period first (it must verify otherwise).",
)
def pay_command(period: str, repo: Path, branch: str, skip_verify: bool) -> None:
    """Send a closed period's payouts: one transfer through the payment provider per payout
    line the close paid by stripe-connect, and commit each answer as the bot to
    royalties/transfers/YYYY-MM.json.

    \b
    Safe to run again: a line sent is never sent again (each try carries its own
    idempotency key, and a run that died before recording is answered with the transfer it
    already made); a line the provider refused (no funds, unknown destination) is recorded
    with the reason and tried again. The provider is FORMARKET_PAYMENTS_URL with
    FORMARKET_PAYMENTS_KEY, as for top-ups.

    \b
    Exit status: 0 every line sent, 1 an error or a line refused (recorded; run again).
    """
    from formarket.control.payouts import pay, transfers_from_settings

    provider = transfers_from_settings()
    repository = open_repo(repo)
    try:
        report = pay(repository, period, provider, branch=branch, verify=not skip_verify)
    finally:
        repository.close()
    _show_payouts(report)
    if report.commit is not None:
        click.echo(
            f"\nrecorded {len(report.sent)} sent, {len(report.refused)} refused in"
            f" royalties/transfers/{period}.json as {report.commit.decode()[:12]}"
        )
    else:
        click.echo("\nnothing to send: every payout line is sent or paid outside the provider")
    if report.refused:
        sys.exit(1)


@command.command("payouts")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
def payouts_command(period: str, repo: Path, branch: str) -> None:
    """Show each payout line of a closed period with its transfer: the provider's reference,
    or why it was refused, from git. Nothing is sent."""
    from formarket.control.payouts import PayReport, closed_payouts
    from formarket.market.refs import branch_tip
    from formarket.market.trees import commit_tree
    from formarket.royalties import engine
    from formarket.royalties.sent import read_record

    engine.check_period(period)
    repository = open_repo(repo)
    try:
        tip = branch_tip(repository, branch)
        _, payouts = closed_payouts(repository, tip, period)
        record = read_record(repository, commit_tree(repository, tip), period)
    finally:
        repository.close()
    _show_payouts(PayReport(period, payouts.lines, record))


def _show_payouts(report: PayReport) -> None:
    from formarket.royalties.transfers import sent_through_provider

    if not report.lines:
        click.echo(f"{report.period} has no payout lines")
    for line in report.lines:
        head = f"{line.publisher} {line.currency} {line.paid}"
        if line.status != "paid":
            click.echo(f"{head}: not paid ({line.status})")
            continue
        if not sent_through_provider(line):
            click.echo(f"{head}: paid by {line.method} outside the provider, to {line.reference}")
            continue
        last = report.latest(line)
        if last is None:
            click.echo(f"{head}: not sent yet")
        elif last.status == "sent":
            click.echo(f"{head}: sent to {last.destination} as {last.reference}")
        else:
            click.echo(f"{head}: refused (try {last.attempt}): {last.reason}")


@command.command("simulate")
@_PERIOD
@REPO_OPTION
@BRANCH_OPTION
@click.option("--calls", type=click.IntRange(1, 10_000_000), default=5000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def simulate_command(period: str, repo: Path, branch: str, calls: int, seed: int) -> None:
    """Commit SIMULATED usage for the listings of a branch, as the bot: a stand-in until the
    gateway and the farm meter real usage. Never run it on a real marketplace."""
    from formarket.market.governance import bot_at
    from formarket.market.refs import branch_tip
    from formarket.royalties import engine, gitio
    from formarket.standins.usage_simulator import Plan, commit_usage, simulate

    engine.check_period(period)
    repository = open_repo(repo)
    try:
        tip = branch_tip(repository, branch)
        book = gitio.price_book(repository, tip, gitio.cache_dir_of(repository))
        files = simulate(book.latest(), Plan(period=period, calls=calls, seed=seed))
        bot = bot_at(repository, tip)
        new = commit_usage(
            repository,
            branch,
            files,
            bot,
            f"Simulated usage for {period}: {calls} calls (seed {seed}); not real usage",
        )
    finally:
        repository.close()
    click.echo(f"committed {len(files)} simulated usage files to {branch} as {new.decode()[:12]}")


def _show(files: dict[str, bytes], out: Path | None) -> None:
    click.echo(files["README.md"].decode(), nl=False)
    if out is None:
        return
    for rel, data in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    click.echo(f"\nwrote {len(files)} files to {out}")
