"""The demo journey, as a function of a source folder, a scratch folder and a printer.

A developer's pull request adds a listing, the check passes and it is merged (and a bad one is
refused); users ask for an agent with that model, once by issue and once by CLI; the farm builds
both and runs them as VMs; calls go through the gateway; usage is committed; the period is
closed, its statements and payouts verified; the site shows the listing, its usage and its
creator's earnings. Everything runs on embedded defaults: `formarket demo` and `make demo`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from formarket.accounts.credit import CreditStore
from formarket.accounts.database import open_database
from formarket.accounts.invoices import InvoiceStore
from formarket.accounts.pseudonym import key_path, load_pseudonyms
from formarket.accounts.store import AccountStore
from formarket.demo.calls import Hop, demo_calls, demo_gateway, demo_usage
from formarket.demo.close import credited_requests, demo_close, demo_invoice
from formarket.demo.farm import demo_farm
from formarket.demo.requests import DEMO_CLI_ACCOUNT, DEMO_DEPLOYER, demo_requests
from formarket.demo.site import demo_site
from formarket.demo.user import DEMO_USER, database_url, demo_control
from formarket.errors import NotFoundError
from formarket.farm.desired import read_deployments, set_state
from formarket.farm.settings import FarmSettings
from formarket.gateway.config import default_state_dir
from formarket.market.governance import bot_identity
from formarket.market.refs import branch_tip, set_branch
from formarket.market.repository import create_repository
from formarket.market.sshsig import new_key
from formarket.market.writer import Identity, commit_changes, fast_forward, import_tree
from formarket.registry.cache import ResultCache, code_digest
from formarket.registry.findings import Severity
from formarket.registry.pr_check import check_pull_request
from formarket.registry.report import render_findings
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import Report, validate_snapshot
from formarket.settings import BOT_KEY

__all__ = ["run_demo", "starter_source"]

Echo = Callable[[str], None]
_STARTER = ("registry", "schemas", "builder", "royalties/policy.yaml")
# The journey's listings: busybox images that build in seconds and boot in a few more.
_MODEL = "tinyforge/echo-chat"
_AGENT = "tinyforge/faq-bot"


def starter_source() -> Path:
    """The checkout this formarket runs from, which holds the starter registry."""
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        if (candidate / "registry" / "publishers").is_dir() and (candidate / "schemas").is_dir():
            return candidate
    raise NotFoundError(
        "no starter registry found", hint="run it in a formarket checkout, or pass --source"
    )


def _step(echo: Echo, number: int, title: str) -> None:
    echo(f"\n== {number}. {title}")


def _show(echo: Echo, report: Report, what: str) -> None:
    summary = f"{what}: {report.documents} documents in {report.seconds:.2f}s"
    echo(render_findings(report.findings, "text", summary=summary))


def run_demo(source: Path, scratch: Path, echo: Echo) -> None:
    repo_path = scratch / "marketplace"
    if repo_path.exists():
        raise NotFoundError(f"{repo_path} exists already", hint="choose an empty --workdir")
    # The bot's signing key lives in the scratch state, outside the repository; every bot
    # commit below (the farm's worker process included) is signed with it.
    key_path = scratch / "bot" / "id_ed25519"
    public = new_key(key_path)
    before = os.environ.get(BOT_KEY.variable)
    os.environ[BOT_KEY.variable] = str(key_path.absolute())
    try:
        _journey(source, scratch, repo_path, public, echo)
    finally:
        if before is None:
            os.environ.pop(BOT_KEY.variable, None)
        else:
            os.environ[BOT_KEY.variable] = before


def _journey(source: Path, scratch: Path, repo_path: Path, public: str, echo: Echo) -> None:
    files = import_tree(source, _STARTER)
    if not any(p.startswith("registry/") for p in files):
        raise NotFoundError(f"{source} holds no registry/")
    # A maintainer names the bot's public key: usage counts only in commits signed with it.
    key_lines = (
        f"# The bot's signing key (FORMARKET_BOT_KEY holds its private half).\nbot_key: {public}"
    )
    governance_yaml = files["registry/governance.yaml"].rstrip(b"\n")
    files["registry/governance.yaml"] = governance_yaml + b"\n" + key_lines.encode() + b"\n"
    # main is checked out: every commit below, the bot's included, brings the working tree
    # along, as in a maintainer's clone.
    repo = create_repository(repo_path, branch="main")
    cache = ResultCache(None, code_digest())
    governance = yaml.safe_load(files["registry/governance.yaml"])
    maintainer = Identity(governance["maintainers"][0], f"{governance['maintainers'][0]}@users")

    _step(echo, 1, "The marketplace repository")
    commit_changes(repo, "main", files, "Start the marketplace", maintainer, sign=False)
    echo(f"a new git repository at {repo_path} holds the starter registry ({len(files)} files)")
    report = validated = validate_snapshot(WorkTreeSnapshot(repo_path), cache)
    _show(echo, report, "formarket validate")
    if report.errors:
        raise NotFoundError("the starter registry does not validate; see the findings above")

    publisher, owner, listing_dir = _pick_publisher(files)
    other_dir = _pick_other_listing(files, publisher)
    slug = listing_dir.rsplit("/", 1)[1]
    new_slug = f"{slug}-mini"
    new_dir = listing_dir.rsplit("/", 1)[0] + "/" + new_slug
    author = Identity(owner, f"{owner}@users")

    _step(echo, 2, f"{owner} (owner of {publisher}) opens a pull request: a new listing")
    good: dict[str, bytes | None] = {}
    for path, content in files.items():
        if path.startswith(listing_dir + "/"):
            rel = path[len(listing_dir) + 1 :]
            if rel == "listing.yaml":
                data = yaml.safe_load(content)
                data["id"] = f"{publisher}/{new_slug}"
                data["name"] = f"{data['name']} Mini"
                data["version"] = "0.1.0"
                # Priced per request, so the statements show what the model is credited for.
                data["pricing"] = {
                    "model": "per_request",
                    "currency": "USD",
                    "per_request": "0.002",
                }
                data["monetization"] = {"metered": ["requests"], "royalty_percent": "70"}
                content = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
            elif rel == "Formfile":
                content = content.replace(f"NAME {slug}".encode(), f"NAME {new_slug}".encode(), 1)
            good[f"{new_dir}/{rel}"] = content
    set_branch(repo, "pr-1", branch_tip(repo, "main"))
    merged = commit_changes(repo, "pr-1", good, f"Add {publisher}/{new_slug}", author, sign=False)
    echo(f"branch pr-1 adds {new_dir}/ ({len(good)} files)")
    report = check_pull_request(repo, "main", "pr-1", owner, cache)
    _show(echo, report, f"formarket check --base main --head pr-1 --author {owner}")
    if report.errors:
        raise NotFoundError("the good pull request was refused; see the findings above")
    fast_forward(repo, "main", merged)
    echo("the check passes; a maintainer merges pr-1 into main")

    _step(echo, 3, f"{owner} opens another pull request: it breaks two rules")
    bad: dict[str, bytes | None] = {}
    own = yaml.safe_load(files[f"{listing_dir}/listing.yaml"])
    own["monetization"]["royalty_percent"] = "99"
    bad[f"{listing_dir}/listing.yaml"] = yaml.safe_dump(own, sort_keys=False).encode()
    theirs = f"{other_dir}/README.md"
    bad[theirs] = files[theirs] + b"\nThis listing is better served by another one.\n"
    set_branch(repo, "pr-2", branch_tip(repo, "main"))
    commit_changes(
        repo, "pr-2", bad, "Raise my royalty; edit a competitor's README", author, sign=False
    )
    echo(
        f"branch pr-2 raises the royalty of {publisher}/{slug} without a new version, and edits"
        f" {theirs}"
    )
    report = check_pull_request(repo, "main", "pr-2", owner, cache)
    _show(echo, report, f"formarket check --base main --head pr-2 --author {owner}")
    refused = sorted({f.code for f in report.findings if f.severity is Severity.ERROR})
    if "REG011" not in refused or "REG016" not in refused:
        raise NotFoundError("the bad pull request was not refused as it should be")
    echo(f"refused ({', '.join(refused)}): pr-2 stays unmerged")

    _step(echo, 4, f"Users ask for {_AGENT} with {publisher}/{new_slug}, the new model")

    farm_state = scratch / "farm"
    settings = FarmSettings(repo=repo_path.absolute(), state=farm_state.absolute())
    model_id = f"{publisher}/{new_slug}"
    requested = demo_requests(repo_path, echo, settings=settings, model=model_id)
    desired = read_deployments(repo)
    pairs = [d for d in (desired[i] for i in requested) if d.kind == "agent"]
    echo(f"committed by the bot: {', '.join(requested)} in registry/deployments/")

    with demo_control(scratch, settings, echo) as user:
        _step(echo, 5, f"A user signs in with GitHub, makes a key and deploys {model_id}")
        user.sign_in()
        user.make_key()
        user.top_up("0.01")
        mine = user.deploy(model_id)
        everything = [*requested, mine]

        _step(echo, 6, "The farm builds the images and runs them as VMs")
        with (
            demo_gateway(repo_path, database_url(scratch)) as gateway,
            demo_farm(repo_path, farm_state, echo, gateway.url) as farm,
        ):
            user.control.gateway_url = gateway.url
            echo(f"the gateway listens on {gateway.url}: callers, and agents calling their models")
            endpoints = farm.wait_routed(everything)
            desired = read_deployments(repo)
            for dep_id in everything:
                d = desired[dep_id]
                echo(
                    f"  {dep_id}: {d.kind} {d.listing.id}@{d.listing.version} for {d.account}"
                    f" at {endpoints[dep_id]}"
                )

            _step(echo, 7, "Calls go through the gateway, which meters them into git")
            calls = [(d.id, d.account, "Do you sell purple giraffes?") for d in pairs]
            calls += [(d.id, d.account, "Where is my order?") for d in pairs[:1]]
            # The FAQ answers this one: the agent calls no model.
            calls += [(d.id, d.account, "How do I reset my password?") for d in pairs[:1]]
            farm.cycle()  # meters the instance-hours so far, into the same spool
            demo_calls(repo_path, gateway.url, calls, echo)
            # Her credit buys five calls of the model at its price per request; the sixth is
            # refused before it reaches the model, until she tops up again.
            user.call(gateway.url, 8)
            user.top_up("0.05")
            user.call(gateway.url, 5)
            if user.refused != 1 or user.calls != 10:
                raise NotFoundError(
                    f"the user's credit bought {user.calls} calls and refused {user.refused};"
                    " 5 calls, a refusal, a top-up and 5 more were expected"
                )

            _step(echo, 8, "The deployments are stopped in git; the farm removes their VMs")
            bot = bot_identity(repo, "main")
            for dep_id in everything:
                set_state(repo, "main", dep_id, "stopped", f"Stop {dep_id} (demo)", bot)
            echo(f"formarket deployments stop ... ({len(everything)} deployments)")
            farm.wait_gone()
        events, hop = demo_usage(repo_path, echo, frozenset({mine}))
        seen = user.dashboard()
        echo(seen)

    _step(echo, 9, "A month later the period is closed, its statements and invoices verified")

    now = datetime.now(UTC)
    next_month = date(now.year + now.month // 12, now.month % 12 + 1, 1)
    accounts = open_database(database_url(scratch))
    try:
        invoices = InvoiceStore(accounts, load_pseudonyms(default_state_dir(repo_path)))
        period, closed = demo_close(
            repo,
            echo,
            now=datetime(next_month.year, next_month.month, 2, tzinfo=UTC),
            invoices=invoices,
            pseudonyms=load_pseudonyms(default_state_dir(repo_path)),
        )
        echo(_credited(repo_path, period, model_id, hop, user.calls))
        her = AccountStore(accounts).account(DEMO_USER)
        assert her is not None  # she signed in
        balance = CreditStore(accounts).balance(her).balance
        invoiced = demo_invoice(repo, echo, invoices, balance, DEMO_USER, period, closed.closing)
    finally:
        accounts.dispose()

    _step(echo, 10, "The catalog site shows the listings, their usage and their earnings")

    site = demo_site(repo_path, scratch / "site", echo)
    shown = _site_shows(site, _AGENT, publisher)
    echo(shown)

    echo("\n== Summary")
    echo(f"  registry validated: {validated.documents} documents, no errors")
    echo(f"  pr-1 by {owner}: passed, merged ({model_id} is listed)")
    echo(f"  pr-2 by {owner}: refused with {', '.join(refused)}")
    echo(f"  requests: {len(pairs)} of {_AGENT} with {model_id} (an issue and the CLI)")
    echo(
        f"  a user: {DEMO_USER} signed in with GitHub (device flow), made a key, topped up,"
        f" deployed {model_id} through the API, called it until her credit ran out and was"
        " refused, topped up again, called it, and saw it in the dashboard"
    )
    echo(f"  the farm: {len(everything)} VMs built, booted, answered, stopped")
    echo(f"  the gateway: {events} usage events committed to registry/usage/")
    echo(f"  royalties/{period}/: statements and payouts closed and verified")
    echo(f"  {invoiced}")
    echo(f"  the catalog: formarket site serve --dir {site}")
    echo(_pseudonyms(repo_path))


def _pseudonyms(repo_path: Path) -> str:
    """How git names the demo's accounts (the logins, only the key's holder can tell)."""
    gateway_dir = default_state_dir(repo_path)
    pseudonyms = load_pseudonyms(gateway_dir)
    named = ", ".join(
        f"{login} as {pseudonyms.of(login)}"
        for login in (DEMO_DEPLOYER, DEMO_CLI_ACCOUNT, DEMO_USER)
    )
    return (
        f"  accounts in git: by pseudonym only ({named}); the key stays outside git, in"
        f" {key_path(gateway_dir)}"
    )


def _credited(repo_path: Path, period: str, model: str, hop: Hop, direct: int) -> str:
    """The model's statement credits it for the calls it served (its agents' calls to it and
    the `direct` calls of a user who deployed it alone), and for nothing else."""
    credited = credited_requests(repo_path, period, model)
    served = hop.model_calls + direct
    if credited != served:
        raise NotFoundError(f"{model} is credited for {credited} requests; it served {served}")
    return (
        f"{model} is credited for {credited} requests, the calls it served: {hop.model_calls}"
        f" from its agents and {direct} from its user; the {hop.answered_alone} calls the FAQ"
        " answered credit it nothing"
    )


def _site_shows(site: Path, agent: str, publisher: str) -> str:
    listing = (site / "agents" / agent / "index.html").read_text()
    owner = (site / "publishers" / publisher / "index.html").read_text()
    if "<svg" not in listing.split('id="usage"', 1)[-1][:4000]:
        raise NotFoundError(f"the site's page of {agent} shows no usage chart")
    if "<svg" not in owner.split('id="earnings"', 1)[-1][:4000]:
        raise NotFoundError(f"the site's page of {publisher} shows no earnings chart")
    return f"the pages of {agent} and of {publisher} chart its usage and {publisher}'s earnings"


def _pick_publisher(files: dict[str, bytes]) -> tuple[str, str, str]:
    """The publisher of the demo's model (a small busybox listing the farm builds in seconds),
    one of its owners and that listing's folder."""
    folder = f"registry/models/{_MODEL}"
    if f"{folder}/listing.yaml" not in files:
        raise NotFoundError(f"the starter registry has no {_MODEL}")
    publisher = _MODEL.split("/")[0]
    pub = yaml.safe_load(files[f"registry/publishers/{publisher}.yaml"])
    return publisher, pub["owners"][0], folder


def _pick_other_listing(files: dict[str, bytes], publisher: str) -> str:
    for path in sorted(files):
        parts = path.split("/")
        if (
            len(parts) == 5
            and parts[1] in ("models", "agents")
            and parts[4] == "README.md"
            and parts[2] != publisher
        ):
            return "/".join(parts[:4])
    raise NotFoundError("the starter registry has a single publisher")
