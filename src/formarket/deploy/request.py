"""A request from the command line: options in, a checked plan out, committed unless dry.

`formarket deploy` is a thin click wrapper over these functions, and `formarket demo` calls
them directly, so both take the same path.
"""

from __future__ import annotations

import getpass
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from formarket.accounts.pseudonym import Pseudonyms
from formarket.deploy.catalog import Catalog, open_market
from formarket.deploy.checks import Refusal, Resolved, resolve
from formarket.deploy.forecast import MonthlyUsage, forecast_lines
from formarket.deploy.plan import forecast, plan_lines
from formarket.deploy.values import (
    parse_duration,
    parse_gpu,
    parse_listing,
    parse_secret,
    parse_set,
)
from formarket.errors import FormarketError, InputError, UsageError
from formarket.farm import desired
from formarket.farm.hosts import load_inventory
from formarket.farm.settings import FarmSettings
from formarket.farm.status import farm_pseudonyms
from formarket.farm.versions import versions_at
from formarket.market.governance import bot_identity
from formarket.registry.git_snapshot import open_git_snapshot
from formarket.schemas.deployment import DeploymentRequest, Origin
from formarket.schemas.usage import ACCOUNT_PATTERN

__all__ = ["DeployOptions", "Planned", "RefusedError", "build_request", "plan", "run"]


class RefusedError(FormarketError):
    """The request failed its checks; `reasons` lists every one."""

    def __init__(self, reasons: Sequence[str]) -> None:
        listed = "\n".join(f"  - {reason}" for reason in reasons)
        super().__init__(
            f"the request was refused; nothing was committed:\n{listed}",
            hint="fix them and run the command again (--dry-run checks without committing)",
        )
        self.reasons = tuple(reasons)


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """`formarket deploy`'s options, as typed."""

    agent: str | None = None
    model: str | None = None
    solution: str | None = None
    version: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    gpu: str | None = None
    sets: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    account: str | None = None
    requester: str | None = None
    idle_after: str | None = None
    # A month's usage to forecast the cost of (None: no forecast).
    usage: MonthlyUsage | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    resolved: Resolved
    where: dict[str, str] = field(default_factory=dict)
    lines: tuple[str, ...] = ()
    commit: bytes | None = None


def _login() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return user if re.fullmatch(ACCOUNT_PATTERN, user) else "cli"


def build_request(options: DeployOptions, pseudonyms: Pseudonyms) -> DeploymentRequest:
    """The request the options describe, naming the requester and the account by their
    pseudonyms, as git will; InputError/UsageError say what is wrong with them."""
    if options.solution and (options.agent or options.model):
        raise UsageError("a solution names its own agent and model; give one or the other")
    if not (options.agent or options.model or options.solution):
        raise UsageError(
            "name an agent, a model (--model) or a solution (--solution)",
            hint="formarket deploy tinyforge/faq-bot --model tinyforge/echo-chat",
        )
    version = f"@{options.version}" if options.version else ""
    agent = parse_listing(options.agent + version, "agent") if options.agent else None
    model_version = version if options.model and not options.agent else ""
    model = parse_listing(options.model + model_version, "model") if options.model else None
    solution = parse_listing(options.solution + version, "solution") if options.solution else None
    requester = options.requester or _login()
    account = options.account or requester
    for name, given in (("requester", requester), ("account", account)):
        if not re.fullmatch(ACCOUNT_PATTERN, given):
            raise InputError(f"{name}: {given[:80]!r} is not an account name ({ACCOUNT_PATTERN})")
    try:
        return DeploymentRequest(
            agent=agent,
            model=model,
            solution=solution,
            vcpus=options.vcpus,
            memory_mib=options.memory_mib,
            gpu=parse_gpu(options.gpu) if options.gpu else None,
            settings=parse_set(options.sets),
            secrets=tuple(parse_secret(item) for item in options.secrets),
            requester=pseudonyms.of(requester),
            account=pseudonyms.of(account),
            origin=Origin(kind="cli"),
            idle_after=parse_duration(options.idle_after) if options.idle_after else None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise InputError(f"{where}: {first['msg']}") from exc


def plan(
    settings: FarmSettings,
    request: DeploymentRequest,
    *,
    seed: str | None = None,
    usage: MonthlyUsage | None = None,
) -> Planned:
    """Check the request against the branch tip and say where it would run, and what a month
    of `usage` would cost; RefusedError lists every reason when it cannot."""
    repo = open_market(settings)
    try:
        current = desired.read_deployments(repo, settings.branch, problems=[])
        catalog = Catalog(
            open_git_snapshot(repo, settings.branch), current, versions_at(repo, settings.branch)
        )
        requested = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = resolve(request, catalog, seed=seed or secrets.token_hex(16), requested=requested)
    finally:
        repo.close()
    if isinstance(result, Refusal):
        raise RefusedError(result.reasons)
    where: dict[str, str] = {}
    if settings.hosts is not None:
        where = forecast(result.deployments, current, load_inventory(settings.hosts).hosts)
    lines = plan_lines(result, where)
    if usage is not None:
        lines += forecast_lines(result.prices, usage)
    return Planned(result, where, tuple(lines))


def run(
    settings: FarmSettings,
    options: DeployOptions,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    pseudonyms: Pseudonyms | None = None,
) -> Planned:
    """Check, print the plan and (unless `dry_run`) commit the deployments as the bot; git
    names the account by its pseudonym only (`pseudonyms`, by default those of the key the
    farm's gateway folder holds)."""
    known = pseudonyms if pseudonyms is not None else farm_pseudonyms(settings)
    planned = plan(settings, build_request(options, known), usage=options.usage)
    for line in planned.lines:
        echo(line)
    if dry_run:
        echo("Dry run: nothing was committed.")
        return planned
    repo = open_market(settings)
    deployments = planned.resolved.deployments
    names = " and ".join(f"{d.listing.id}@{d.listing.version}" for d in deployments)
    try:
        commit = desired.submit(
            repo,
            settings.branch,
            deployments,
            f"Deploy {names or 'nothing new'} for {planned.resolved.request.account}",
            bot_identity(repo, settings.branch),
        )
    finally:
        repo.close()
    ids = ", ".join(d.id for d in deployments)
    reused = "".join(f" (reusing {d.id})" for d in planned.resolved.reused)
    echo(f"Committed {ids}{reused} to registry/deployments/ on {settings.branch}.")
    return Planned(planned.resolved, planned.where, planned.lines, commit)
