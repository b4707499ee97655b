"""`formarket test LISTING[@VERSION]...`: build a listing, boot it under qemu, run its smoke
test, stop it."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket import settings as table
from formarket.commands._options import BRANCH_OPTION, CACHE_OPTION, REPO_OPTION, STORE_OPTION
from formarket.errors import FormarketError, UsageError

if TYPE_CHECKING:
    from formarket.builder.smoke import SmokeReport

__all__ = ["command"]

_TARGET = re.compile(
    r"^(?P<id>[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*?)(?:@(?P<version>[0-9][0-9A-Za-z.+-]*))?$"
)


@click.command("test", short_help="Build a listing, boot it and run its smoke test.")
@click.argument("targets", nargs=-1, metavar="LISTING[@VERSION]...")
@REPO_OPTION
@BRANCH_OPTION
@STORE_OPTION
@CACHE_OPTION
@click.option(
    "--changed-from",
    "changed_from",
    metavar="BASE",
    default=None,
    help="Test every listing whose folder changed from commit BASE to --head (a pull"
    " request's listings), instead of naming them.",
)
@click.option(
    "--head",
    metavar="REV",
    default="HEAD",
    show_default=True,
    help="With --changed-from: the pull request's commit. Its listings are tested as the"
    " working tree has them, so check that commit out.",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Only print the listing ids that would be tested, one a line.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="VMs booted at once (builds run one at a time).",
)
@click.option(
    "--accel",
    type=click.Choice(["tcg", "kvm"]),
    default="tcg",
    show_default=True,
    help="qemu's accelerator: software emulation works everywhere, KVM where /dev/kvm does.",
)
@click.option(
    "--memory-cap",
    type=click.IntRange(128, 65536),
    default=2048,
    show_default=True,
    metavar="MIB",
    help="The most memory a VM gets, whatever its Formfile asks for.",
)
@click.option(
    "--boot-timeout",
    type=click.IntRange(5, 1800),
    default=240,
    show_default=True,
    metavar="SECONDS",
    help="How long the VM may take to print its boot marker.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report per listing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def command(
    targets: tuple[str, ...],
    repo: Path,
    branch: str,
    store: Path | None,
    cache: Path | None,
    changed_from: str | None,
    head: str,
    list_only: bool,
    jobs: int,
    accel: str,
    memory_cap: int,
    boot_timeout: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run listings' smoke tests: build each listing's image (in the builder's sandbox, with
    network only for INSTALL), boot it under qemu, send the `test:` request of its
    listing.yaml, judge the answer, stop the VM. Exits 1 when a test fails, with what was
    expected, what came and the tail of the VM's console.

    LISTING is a listing id, tested as it is in the working tree, or a listing's folder.
    LISTING@VERSION tests the listing as it was at the commit that first published VERSION
    on --branch.

    \b
    Examples:
      formarket test tinyforge/echo-chat
      formarket test tinyforge/echo-chat@1.0.0 tinyforge/faq-bot -j 2
      formarket test --changed-from origin/main       # a pull request's listings
      formarket test --changed-from "$BASE_SHA" --list
    """
    from formarket.builder.build import Builder, BuildSettings
    from formarket.builder.smoke import (
        SmokeSettings,
        build_for_test,
        changed_listings,
        run_built,
    )
    from formarket.commands.build import default_store
    from formarket.process import Runner

    if changed_from is not None:
        if targets:
            raise UsageError("name listings or give --changed-from, not both")
        targets = tuple(changed_listings(repo, changed_from, head))
    elif not targets:
        raise UsageError(
            "name a listing to test", hint="for example: formarket test tinyforge/echo-chat"
        )
    if list_only:
        for target in targets:
            click.echo(target)
        return
    if not targets:
        click.echo("no listing changed: nothing to test")
        return

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    store = store or default_store()
    cache = cache or store / "cache"
    bases = repo / "builder" / "bases"
    if not bases.is_dir():
        from formarket.builder.bases import find_bases_dir

        bases = find_bases_dir(Path.cwd())
    builder = Builder(
        BuildSettings(
            store=store,
            cache=cache,
            bases_dir=bases,
            base_cache=table.BASE_CACHE.read(os.environ),
        ),
        progress,
    )
    smoke = SmokeSettings(accel=accel, boot_timeout=boot_timeout, memory_cap_mib=memory_cap)
    runner = Runner()
    reports: list[SmokeReport] = []
    errors: list[str] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="formarket-test-") as scratch_dir:
        scratch = Path(scratch_dir)
        futures: list[tuple[str, Future[SmokeReport]]] = []
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for n, target in enumerate(targets):
                try:
                    folder = _folder(target, repo, branch, scratch / f"src-{n}")
                    built = build_for_test(folder, builder, progress)
                except FormarketError as exc:
                    with lock:
                        errors.append(f"FAILED: {target}: {exc.message}" + _hint(exc))
                    progress(f"{target}: {exc.message}")
                    continue
                futures.append(
                    (
                        target,
                        pool.submit(
                            run_built, built, runner, smoke, progress, scratch=scratch / f"vm-{n}"
                        ),
                    )
                )
            for target, future in futures:
                try:
                    reports.append(future.result())
                except FormarketError as exc:
                    errors.append(f"FAILED: {target}: {exc.message}" + _hint(exc))
    for report in reports:
        if as_json:
            click.echo(json.dumps(_as_data(report)))
        else:
            click.echo(report.render())
    for error in errors:
        click.echo(error)
    failed = len(errors) + sum(not report.passed for report in reports)
    if not as_json:
        click.echo(f"{len(targets) - failed} of {len(targets)} smoke test(s) passed")
    if failed:
        raise SystemExit(1)


def _folder(target: str, repo: Path, branch: str, scratch: Path) -> Path:
    from formarket.builder.smoke import export_version, listing_folder

    path = Path(target)
    if (path / "listing.yaml").is_file():
        return path
    match = _TARGET.match(target)
    if match is None:
        raise UsageError(
            f"{target!r} is neither a listing id (PUBLISHER/SLUG[@VERSION]) nor a listing's folder"
        )
    if match["version"] is None:
        return listing_folder(repo, match["id"])
    export_version(repo, match["id"], match["version"], branch, scratch)
    return scratch


def _hint(exc: FormarketError) -> str:
    return f"\n  hint: {exc.hint}" if exc.hint else ""


def _as_data(report: SmokeReport) -> dict[str, object]:
    return {
        "listing": report.listing,
        "version": report.version,
        "build_id": report.build_id,
        "passed": report.passed,
        "method": report.call.method if report.call else None,
        "path": report.call.path if report.call else None,
        "status": report.status,
        "problems": list(report.problems),
        "body": report.body[:2000].decode("utf-8", "replace"),
        "console_tail": report.console_tail,
        "seconds": {k: round(v, 2) for k, v in report.seconds.items()},
    }
