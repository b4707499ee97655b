"""Deployment issues: a webhook payload in, desired deployments committed and a comment out.

Who may deploy: a login on governance.yaml's `deployers` list, or anyone whose request a
maintainer approved with the `approved` label (the label events say who added it). The issue
is read again from the API when the request is executed, because a body can be edited after
approval; the executed body's sha256 is recorded in the deployments, and a body that differs
from the one approved is refused until a maintainer approves again. One issue gives one set of
deployments, with ids derived from the repository and issue number, so re-running a workflow
changes nothing; closing the issue stops them. Every outcome is posted as a comment.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dulwich.repo import Repo
from pydantic import ValidationError

from formarket.accounts.pseudonym import Pseudonyms, is_pseudonym
from formarket.deploy.catalog import Catalog, open_market
from formarket.deploy.checks import (
    Refusal,
    Resolved,
    deployment_id,
    issue_seed,
    resolve,
)
from formarket.deploy.issue_form import FormError, parse_issue_body
from formarket.deploy.plan import forecast, plan_lines
from formarket.deploy.values import quote
from formarket.errors import InputError, NotFoundError, UsageError
from formarket.farm import desired
from formarket.farm.hosts import load_inventory
from formarket.farm.settings import FarmSettings
from formarket.farm.status import farm_pseudonyms
from formarket.farm.versions import versions_at
from formarket.github import REPO_SLUG, GitHub, Issue, LabelEvent, issue_from_json
from formarket.market.governance import bot_identity
from formarket.registry.git_snapshot import open_git_snapshot
from formarket.schemas.deployment import Deployment, DeploymentRequest, Origin
from formarket.schemas.usage import ACCOUNT_PATTERN

__all__ = ["APPROVED_LABEL", "REQUEST_LABEL", "Outcome", "handle_event", "handle_payload"]

APPROVED_LABEL = "approved"
REQUEST_LABEL = "deployment"
MAX_PAYLOAD_BYTES = 8 << 20
# Text that marks an attempt at shell or workflow-expression injection. formarket never runs
# a title, but refuses such requests so that a maintainer sees them for what they are.
_HOSTILE = ("${{", "$(", "`")
_LOGIN = re.compile(ACCOUNT_PATTERN)

Action = Literal["deployed", "unchanged", "refused", "stopped", "ignored"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event led to; `comment` is what was posted (None when nothing was)."""

    action: Action
    issue: int | None = None
    deployment_ids: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    comment: str | None = None
    note: str = ""


def read_payload(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_PAYLOAD_BYTES + 1)
    except OSError as exc:
        raise NotFoundError(f"cannot read the event payload {path}: {exc}") from exc
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InputError(f"the event payload {path} is over {MAX_PAYLOAD_BYTES} bytes")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"the event payload {path} is not JSON", hint="$GITHUB_EVENT_PATH"
        ) from exc
    if not isinstance(payload, dict):
        raise InputError(f"the event payload {path} is not a JSON object")
    return payload


def handle_event(
    event_path: Path, settings: FarmSettings, github: GitHub, *, repo_slug: str | None = None
) -> Outcome:
    """Handle the webhook payload GitHub Actions saved at `event_path`."""
    return handle_payload(read_payload(event_path), settings, github, repo_slug=repo_slug)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _ignore(note: str, issue: int | None = None) -> Outcome:
    return Outcome("ignored", issue, note=note)


def handle_payload(
    payload: Mapping[str, Any],
    settings: FarmSettings,
    github: GitHub,
    *,
    repo_slug: str | None = None,
) -> Outcome:
    """Handle one event: issues (opened, edited, labeled, closed) or issue_comment (created,
    where a comment of `/deploy` asks for the request to be tried again)."""
    action = payload.get("action")
    data = payload.get("issue")
    if not isinstance(data, dict):
        return _ignore("not an issue event")
    event_issue = issue_from_json(data)
    number = event_issue.number
    repository = payload.get("repository")
    slug = repo_slug or (repository.get("full_name") if isinstance(repository, dict) else None)
    if not isinstance(slug, str) or not REPO_SLUG.match(slug):
        raise UsageError("the payload names no repository", hint="pass --repo-slug owner/name")
    if event_issue.is_pull_request:
        return _ignore("a pull request, not an issue", number)
    comment = payload.get("comment")
    if comment is not None:
        text = comment.get("body") if isinstance(comment, dict) else None
        if action != "created" or not isinstance(text, str) or text.strip() != "/deploy":
            return _ignore("a comment that is not /deploy", number)
    elif action == "labeled":
        label = payload.get("label")
        if not isinstance(label, dict) or label.get("name") != APPROVED_LABEL:
            return _ignore("a label other than approved", number)
    elif action not in ("opened", "edited", "closed"):
        return _ignore(f"the action {action!r} asks nothing of the farm", number)

    repo = open_market(settings)
    try:
        return _handle(repo, payload, settings, github, slug, event_issue, action)
    finally:
        repo.close()


def _handle(
    repo: Repo,
    payload: Mapping[str, Any],
    settings: FarmSettings,
    github: GitHub,
    slug: str,
    event_issue: Issue,
    action: str,
) -> Outcome:
    number = event_issue.number
    seed = issue_seed(slug, number)
    own_ids = (deployment_id(seed, "model"), deployment_id(seed, "agent"))
    current = desired.read_deployments(repo, settings.branch, problems=[])
    existing = [current[i] for i in own_ids if i in current]
    if action == "closed":
        # A model deployment that another request's agent reuses keeps running.
        needed = {
            d.model_deployment
            for d in current.values()
            if d.state == "running" and d.id not in own_ids
        }
        return _stop(repo, settings, github, slug, number, existing, needed)

    issue = github.get_issue(slug, number)  # as it is now, not as the payload saw it
    if issue.state != "open":
        return _ignore("the issue is closed", number)
    if REQUEST_LABEL not in issue.labels:
        return _ignore(f"not labelled {REQUEST_LABEL}", number)
    sha = _sha256(issue.body)
    catalog = Catalog(
        open_git_snapshot(repo, settings.branch), current, versions_at(repo, settings.branch)
    )
    governance = catalog.governance()
    if governance is None:
        raise NotFoundError("registry/governance.yaml is missing or invalid on " + settings.branch)

    reasons: list[str] = []
    if any(mark in issue.title for mark in _HOSTILE):
        reasons.append(
            "The title contains shell or workflow-expression syntax (`$(`, a backtick or"
            " `${{`); retitle the issue in plain words."
        )
    # The payload of a `labeled` event holds the body as the maintainer saw it when approving.
    approved_body = _sha256(event_issue.body) if action == "labeled" else None
    reasons += _authorization(
        issue,
        sha,
        approved_body,
        existing,
        governance.deployers,
        governance.maintainers,
        github.label_events(slug, number) if issue.author not in governance.deployers else [],
    )
    request: DeploymentRequest | None = None
    account = _account(issue.author, farm_pseudonyms(settings))
    if account is None:
        reasons.append(f"The issue's author {issue.author[:80]!r} is not a GitHub login.")
    try:
        form = parse_issue_body(issue.body)
    except FormError as exc:
        reasons += [f"{r[:1].upper()}{r[1:]}." for r in exc.reasons]
    else:
        if account is not None:  # else refused above
            try:
                request = DeploymentRequest(
                    agent=form.agent,
                    model=form.model,
                    solution=form.solution,
                    vcpus=form.vcpus,
                    memory_mib=form.memory_mib,
                    gpu=form.gpu,
                    settings=form.settings,
                    requester=account,
                    account=account,
                    origin=Origin(kind="issue", issue=number, body_sha256=sha),
                )
            except ValidationError as exc:
                reasons += [f"{e['msg']}." for e in exc.errors()]
    if reasons or request is None:
        return _post(
            github, slug, number, _refused(reasons), Outcome("refused", number, (), tuple(reasons))
        )

    if existing and all(d.origin.body_sha256 == sha and d.state == "running" for d in existing):
        ids = tuple(d.id for d in existing)
        body = _unchanged(ids)
        return _post(github, slug, number, body, Outcome("unchanged", number, ids))

    requested = issue.created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = resolve(request, catalog, seed=seed, requested=requested)
    if isinstance(result, Refusal):
        return _post(
            github,
            slug,
            number,
            _refused(list(result.reasons)),
            Outcome("refused", number, (), result.reasons),
        )
    where = _where(settings, result, current)
    desired.submit(
        repo,
        settings.branch,
        result.deployments,
        f"Deploy {_listings(result)} for {slug}#{number}",
        bot_identity(repo, settings.branch),
    )
    ids = tuple(d.id for d in result.all)
    return _post(github, slug, number, _accepted(result, where), Outcome("deployed", number, ids))


def _account(author: str, pseudonyms: Pseudonyms) -> str | None:
    """The author's pseudonym, which the deployments name them by in git; None when the author
    is no login GitHub gives (one shaped as a pseudonym would pass for that account)."""
    if not _LOGIN.fullmatch(author) or is_pseudonym(author):
        return None
    return pseudonyms.of(author)


def _authorization(
    issue: Issue,
    sha: str,
    approved_body: str | None,
    existing: list[Deployment],
    deployers: tuple[str, ...],
    maintainers: tuple[str, ...],
    events: list[LabelEvent],
) -> list[str]:
    """Why the issue's author may not deploy this body; empty when they may."""
    if issue.author in deployers:
        return []
    last = next((e for e in reversed(events) if e.label == APPROVED_LABEL), None)
    if last is None or last.event != "labeled":
        return [
            f"@{issue.author} is not on the deployers list; a maintainer can approve this"
            f" request by adding the `{APPROVED_LABEL}` label."
        ]
    if last.actor not in maintainers:
        return [
            f"The `{APPROVED_LABEL}` label was added by @{last.actor}, who is not a maintainer;"
            " only a maintainer's approval counts."
        ]
    if approved_body == sha:
        return []
    if approved_body is None and existing and all(d.origin.body_sha256 == sha for d in existing):
        return []  # the approved body, already deployed: a re-run
    return [
        f"The request was edited after @{last.actor} approved it; a maintainer must approve"
        f" it again (remove and add the `{APPROVED_LABEL}` label)."
    ]


def _where(
    settings: FarmSettings, result: Resolved, current: Mapping[str, Deployment]
) -> dict[str, str]:
    if settings.hosts is None:
        return {}
    return forecast(result.deployments, current, load_inventory(settings.hosts).hosts)


def _listings(result: Resolved) -> str:
    return " and ".join(f"{d.listing.id}@{d.listing.version}" for d in result.all)


def _stop(
    repo: Repo,
    settings: FarmSettings,
    github: GitHub,
    slug: str,
    number: int,
    existing: list[Deployment],
    needed: set[str | None],
) -> Outcome:
    running = [d for d in existing if d.state == "running" and d.id not in needed]
    if not running:
        return _ignore("nothing of this issue is running (or only what others use)", number)
    bot = bot_identity(repo, settings.branch)
    for dep in running:
        desired.set_state(
            repo, settings.branch, dep.id, "stopped", f"Stop {dep.id}: {slug}#{number} closed", bot
        )
    ids = tuple(d.id for d in running)
    body = (
        f"{_MARK}\n**Stopped** {', '.join(f'`{i}`' for i in ids)}: the issue was closed. The farm"
        " shuts the virtual machines down; reopening the issue does not restart them (open a new"
        " request)."
    )
    return _post(github, slug, number, body, Outcome("stopped", number, ids))


_MARK = "<!-- formarket:deploy -->"


def _refused(reasons: list[str]) -> str:
    items = "\n".join(f"- {reason}" for reason in reasons)
    return (
        f"{_MARK}\n**Not deployed.** Nothing was committed, for these reasons:\n\n{items}\n\n"
        "Edit the issue to fix them: the request is tried again on every edit."
    )


def _unchanged(ids: tuple[str, ...]) -> str:
    shown = ", ".join(f"`{i}`" for i in ids)
    return f"{_MARK}\n**Already deployed** as {shown}; nothing changed. Closing the issue stops it."


def _accepted(result: Resolved, where: Mapping[str, str]) -> str:
    plan = "\n".join(line.replace("`", "'") for line in plan_lines(result, where))
    request = result.deployments[-1].request_sha256 if result.deployments else ""
    return (
        f"{_MARK}\n**Deployment accepted** and committed to `registry/deployments/`"
        f" (request sha256 {quote(request, 16)}).\n\n```text\n{plan}\n```\n\n"
        "The farm builds the images and starts the virtual machines; the gateway serves the"
        " agent once it answers. Closing this issue stops the deployment."
    )


def _post(github: GitHub, slug: str, number: int, body: str, outcome: Outcome) -> Outcome:
    """Comment unless the very same comment is already there (a re-run says nothing new)."""
    if any(c.body == body for c in github.comments(slug, number)):
        return outcome
    github.create_comment(slug, number, body)
    return Outcome(
        outcome.action,
        outcome.issue,
        outcome.deployment_ids,
        outcome.reasons,
        body,
        outcome.note,
    )
