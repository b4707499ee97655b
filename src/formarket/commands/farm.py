"""`formarket farm`: run the build farm's Celery workers and its beat (the reconcile clock).

Settings come from the environment (`FORMARKET_BROKER_URL`, `FORMARKET_REPO`, ...: see
formarket.settings); with no broker configured the farm runs on sqlite files in its state
folder, so one machine needs no server at all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from formarket import settings as table
from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, STATE_OPTION, farm_settings
from formarket.errors import UsageError

__all__ = ["command"]

_LOGLEVELS = ("debug", "info", "warning", "error")


def _queues(value: str) -> list[str]:
    from formarket.farm.celery_app import QUEUES

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise UsageError(
            f"--queues {value!r}: unknown queue {', '.join(unknown) or '(none given)'}",
            hint=f"the farm's queues are {', '.join(QUEUES)}; e.g. --queues build,deploy",
        )
    return names


def _help() -> str:
    """The group's help, with the variables the farm reads as the settings table has them."""
    farm = [s for s in table.TABLE if "farm" in s.commands]
    width = max(len(s.variable) for s in farm)
    lines = [f"  {s.variable:{width}}  {s.shown_default}" for s in farm]
    return "\n".join(
        [
            "The build farm: Celery workers that build images and deploy them, and the beat"
            " that runs the reconciler.",
            "",
            "The farm reads its settings from the environment; `formarket settings` says what"
            " each one is. When unset:",
            "",
            "\b",
            *lines,
            "",
            "\b",
            "Examples:",
            "  formarket farm worker --queues build --concurrency 2     a build host",
            "  formarket farm worker --queues deploy                    a deploy host",
            "  formarket farm beat                                      exactly one per farm",
        ]
    )


@click.group("farm", help=_help())
def command() -> None:
    pass


@command.command("worker")
@click.option(
    "--queues",
    "-Q",
    default="build,deploy",
    show_default=True,
    help="Which queues this worker takes tasks from, comma-separated: `build` (image builds:"
    " long, CPU-heavy, need root) and `deploy` (deployments, stops, the reconciler).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=None,
    help="How many tasks run at once, one process each (default: the number of CPUs). A"
    " build uses a core or more, so a build host wants about one per two cores.",
)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(_LOGLEVELS),
    default="info",
    show_default=True,
    help="How much the worker logs: info shows each task received and finished.",
)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
def worker(
    queues: str,
    concurrency: int | None,
    loglevel: str,
    repo: Path,
    branch: str,
    state: Path | None,
) -> None:
    """Run a farm worker in this process until it is stopped (Ctrl-C or SIGTERM: running
    tasks finish first; a second Ctrl-C stops at once, and those tasks go to another worker).

    A worker takes one task at a time per process and acknowledges it only when it is done,
    so a worker that dies mid-build hands the build to another worker.

    \b
    Examples:
      FORMARKET_BROKER_URL=redis://farm-redis:6379/0 formarket farm worker -Q build -c 2
      formarket farm worker          (embedded: sqlite files under build/farm)
    """
    from formarket.farm.celery_app import make_app

    names = _queues(queues)
    app = make_app(farm_settings(repo, branch, state))
    argv = ["worker", "--queues", ",".join(names), "--loglevel", loglevel.upper()]
    argv += ["-O", "fair", "--prefetch-multiplier", "1"]
    # A name of its own per process: several workers may run on one machine.
    argv += ["--hostname", f"formarket-{os.getpid()}@%h"]
    # Gossip and mingle synchronise revocations between workers at start (a second or more
    # of waiting); the farm revokes nothing, and its heartbeat is the reconciler.
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)


@command.command("beat")
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(_LOGLEVELS),
    default="info",
    show_default=True,
    help="How much beat logs: info shows each reconcile it sends.",
)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
def beat(loglevel: str, repo: Path, branch: str, state: Path | None) -> None:
    """Run the farm's clock in this process: it sends `formarket.reconcile` every
    FORMARKET_RECONCILE_SECONDS (default 30) to the deploy queue. Run exactly one per farm;
    a reconcile that waits longer than a period expires unrun, the next one supersedes it.

    \b
    Example:
      FORMARKET_RECONCILE_SECONDS=10 formarket farm beat
    """
    from formarket.farm.celery_app import make_app

    app = make_app(farm_settings(repo, branch, state))
    app.start(["beat", "--loglevel", loglevel.upper()])


@command.command("waker")
@click.option(
    "--interval",
    type=click.FloatRange(0.01, 10),
    default=0.1,
    show_default=True,
    help="Seconds between looks at the gateway's wake folder.",
)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
def waker(interval: float, repo: Path, branch: str, state: Path | None) -> None:
    """Start scaled-to-zero deployments as soon as a call waits for them.

    A deployment made with `formarket deploy --idle-after 15m` has its VM stopped (disk and
    domain kept) once no call reached it for that long; the gateway then holds its next call
    and asks for a wake in its state folder. This process watches for those requests, starts
    the domain again where it is, waits for its service and publishes its route, so the
    held call goes on. Run one per farm beside beat; without it, reconcile cycles do the
    same, only as often as FORMARKET_RECONCILE_SECONDS.

    \b
    Example:
      FORMARKET_HOSTS=hosts.yaml formarket farm waker
    """
    from formarket.farm.operations import watch_wakes

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    watch_wakes(farm_settings(repo, branch, state), interval=interval)


@command.command("reconcile")
@click.option(
    "--here",
    is_flag=True,
    help="Build, deploy and stop in this process instead of handing the work to the queues"
    " (for a farm of one machine with no worker running, and for debugging).",
)
@click.option(
    "--until-settled",
    "settle",
    type=click.FloatRange(0, 86400),
    default=0,
    metavar="SECONDS",
    help="Repeat cycles until nothing is left to do or the time is up (with --here).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each cycle's summary as JSON.")
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
def reconcile(
    here: bool,
    settle: float,
    as_json: bool,
    repo: Path,
    branch: str,
    state: Path | None,
) -> None:
    """Compare the deployments git wants with the domains on every host, and hand out the
    builds, deploys and stops that make them agree (what beat runs every few seconds).

    Deployments whose host does not answer are placed again elsewhere; work already handed
    out is not handed out twice while its lease lasts.

    \b
    Examples:
      FORMARKET_HOSTS=hosts.yaml formarket farm reconcile
      formarket farm reconcile --here --until-settled 300
    """
    import json
    import time

    from formarket.farm.celery_app import make_app
    from formarket.farm.operations import celery_enqueue, reconcile_once, run_here

    settings = farm_settings(repo, branch, state)
    enqueue = run_here(settings) if here else celery_enqueue(make_app(settings))
    deadline = time.monotonic() + settle
    while True:
        cycle = reconcile_once(settings, enqueue)
        summary = cycle.summary()
        if as_json:
            click.echo(json.dumps(summary, sort_keys=True))
        else:
            _echo_cycle(summary)
        waiting = any(w.startswith("waiting for") for w in summary["waiting"].values())
        settled = cycle.plan.idle and not waiting and not summary["failed"]
        if settled or time.monotonic() >= deadline:
            break
        if not here:
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0)))
    if summary["failed"]:
        raise SystemExit(1)


def _echo_cycle(summary: dict[str, object]) -> None:
    def count(key: str) -> int:
        value = summary[key]
        return len(value) if isinstance(value, list | dict) else 0

    click.echo(
        f"reconciled in {summary['seconds']}s: {count('running')} running,"
        f" {count('builds')} builds, {count('deploys')} deploys, {count('stops')} stops handed"
        f" out; {count('waiting')} waiting, {count('refused')} refused"
    )
    for key in ("builds", "deploys", "stops", "failed", "problems"):
        value = summary[key]
        for item in value if isinstance(value, list) else []:
            click.echo(f"  {key[:-1]}: {item}")
    for key in ("waiting", "refused", "down"):
        value = summary[key]
        for name, why in sorted(value.items()) if isinstance(value, dict) else []:
            click.echo(f"  {key}: {name}: {why}")
