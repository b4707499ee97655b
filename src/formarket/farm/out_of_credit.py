"""Accounts out of credit: told, given the grace the platform's terms set, then stopped.

Each cycle the farm looks at the balance of every account that runs deployments priced by
the hour. A balance at or below zero is marked from the first cycle that finds it so
(`CreditStore.standing`); the control plane shows the account when its deployments stop
(`GET /v1/balance`), and a deployment that came from an issue is told there, once per time
the balance reached zero. Once `grace_after_zero_hours` of the terms (royalties/policy.yaml)
has passed, the bot commits the account's priced deployments stopped, with the running
agents that call them (an agent left without its model would only fail), and the commit
says why, naming the account by its pseudonym alone. A top-up that lifts the balance above
zero before then clears the mark, and nothing stops.

A mark stays while the balance stays at zero, even once nothing runs: a deployment made
again without a top-up stops at the next cycle, not after a second grace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from formarket.accounts.credit import Standing
from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.farm.notify import Commenter
from formarket.farm.statefile import load_mapping
from formarket.schemas.deployment import Deployment
from formarket.schemas.usage import RoyaltyPolicy
from formarket.yamldoc import load_yaml

__all__ = [
    "DEFAULT_GRACE",
    "Overdue",
    "grace_of",
    "notice_comment",
    "overdue",
    "stop_message",
    "tell_out_of_credit",
]

_log = logging.getLogger("formarket.farm")
DEFAULT_GRACE = timedelta(hours=RoyaltyPolicy.model_fields["grace_after_zero_hours"].default)
_TOLD = "credit-told.json"


def grace_of(policy: bytes | None) -> timedelta:
    """The grace the terms set (the bytes of royalties/policy.yaml); the default when there
    are no terms, or they do not read (the royalties report that)."""
    if policy is None:
        return DEFAULT_GRACE
    try:
        terms = RoyaltyPolicy.model_validate(load_yaml(policy, "royalties/policy.yaml").data)
    except (FormarketError, ValidationError) as exc:
        _log.warning("royalties/policy.yaml does not read, the default grace holds: %s", exc)
        return DEFAULT_GRACE
    return timedelta(hours=terms.grace_after_zero_hours)


@dataclass(frozen=True, slots=True)
class Overdue:
    """An account at zero: since when, when its deployments stop, and which they are."""

    account: str
    zero_since: datetime
    stops_at: datetime
    deployments: tuple[str, ...]  # priced ones, and the running agents that call them


def overdue(
    desired: Mapping[str, Deployment],
    priced: frozenset[str],
    standings: Mapping[str, Standing],
    grace: timedelta,
) -> list[Overdue]:
    """The accounts at zero among those running `priced` deployments, with what stops."""
    found: list[Overdue] = []
    for account, standing in sorted(standings.items()):
        if standing.zero_since is None or standing.balance > 0:
            continue
        mine = {
            d.id
            for d in desired.values()
            if d.account == account and d.state == "running" and d.id in priced
        }
        if not mine:
            continue
        callers = {
            d.id
            for d in desired.values()
            if d.kind == "agent" and d.state == "running" and d.model_deployment in mine
        }
        since = standing.zero_since
        found.append(Overdue(account, since, since + grace, tuple(sorted(mine | callers))))
    return found


def stop_message(due: Overdue, grace: timedelta) -> str:
    hours = int(grace.total_seconds() // 3600)
    return (
        f"Stop deployment {', '.join(due.deployments)}: account {due.account} is out of credit\n\n"
        f"Its balance has been at or below zero since {due.zero_since:%Y-%m-%d %H:%M} UTC,"
        f" and the grace of {hours}h that the platform's terms give (grace_after_zero_hours"
        " in royalties/policy.yaml) has passed."
    )


def notice_comment(deployments: list[Deployment], stops_at: datetime) -> str:
    lines = [
        "<!-- formarket-farm credit -->",
        f"**Out of credit.** This account's balance is at zero: unless it is topped up, these"
        f" deployments stop at {stops_at:%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    lines += [f"- `{d.id}`: {d.kind} {d.listing.id}@{d.listing.version}" for d in deployments]
    lines += ["", "`formarket topup` adds credit; `formarket balance` shows it."]
    return "\n".join(lines)


def tell_out_of_credit(
    state: Path,
    desired: Mapping[str, Deployment],
    due: list[Overdue],
    repo_slug: str,
    github: Callable[[], Commenter],
) -> list[int]:
    """Comment on each issue whose deployments an account at zero runs, once per time the
    balance reached zero; the issues told. A failure to post is tried again next cycle."""
    path = state / _TOLD
    told = load_mapping(path, str)
    wanted: dict[int, tuple[str, datetime, list[Deployment]]] = {}
    for item in due:
        mark = item.zero_since.isoformat()
        for dep_id in item.deployments:
            d = desired[dep_id]
            if d.origin.kind != "issue" or not d.origin.issue:
                continue
            if told.get(str(d.origin.issue)) == mark:
                continue
            wanted.setdefault(d.origin.issue, (mark, item.stops_at, []))[2].append(d)
    if not wanted:
        return []
    client = github()
    done: list[int] = []
    try:
        for number, (mark, stops_at, deps) in sorted(wanted.items()):
            try:
                client.create_comment(repo_slug, number, notice_comment(deps, stops_at))
            except FormarketError as exc:
                _log.warning("could not comment on issue #%d: %s", number, exc)
                continue
            told[str(number)] = mark
            done.append(number)
    finally:
        client.close()
    write_atomically(path, json.dumps(dict(sorted(told.items()))).encode())
    return done
