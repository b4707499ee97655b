"""Every `FORMARKET_*` variable in one table: what it is, its type, its default, its flag.

The table drives everything that reads a setting: the farm's, the gateway's and the cache's
settings are read from the environment through it, the CLI's shared options (`--repo`,
`--branch`, `--state`, `--gateway-dir`, ...) are built from it (formarket.commands._options),
and `formarket settings` and docs/settings.md are written from it. A variable formarket reads
has the role `read`; the table also names those the farm sets for a deployment's VM (`vm`) and
those that only appear in text, example units or the test suite (`named`), so that one place
names every `FORMARKET_*` variable.

An unset or empty variable means its default; a malformed one is a UsageError that names the
variable, the value and what was expected.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from formarket.errors import UsageError

__all__ = [
    "BASE_CACHE",
    "BOT_KEY",
    "BRANCH",
    "BRANCH_NAME",
    "BROKER_URL",
    "BUILD_TIME_LIMIT",
    "CACHE",
    "CACHE_DIR",
    "CACHE_KEY",
    "CONTROL_URL",
    "DATABASE_URL",
    "DEBUG",
    "EVERY_COMMAND",
    "FLAG",
    "FLOAT_SECONDS",
    "GATEWAY_DIR",
    "GATEWAY_URL",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "GITHUB_REPO",
    "HOSTS",
    "OWNER_NAME",
    "PATH",
    "PAYMENTS_KEY",
    "PAYMENTS_URL",
    "PAYMENTS_WEBHOOK_SECRET",
    "PSEUDONYM_KEY",
    "RECONCILE_SECONDS",
    "REPO",
    "RESULT_BACKEND",
    "SECONDS",
    "STATE",
    "STORE",
    "TABLE",
    "TEXT",
    "URL",
    "VISIBILITY_TIMEOUT",
    "WEIGHTS_ALLOW_PRIVATE",
    "Kind",
    "Setting",
    "by_variable",
    "render_markdown",
    "shown_value",
]

T = TypeVar("T")
Role = Literal["read", "vm", "named"]

# `commands` of a setting every command reads.
EVERY_COMMAND = "*"


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """A type of setting: how a value is read, and what a good one looks like."""

    name: str
    expected: str  # completes "<variable>='<value>' is not ..."
    example: str
    parse: Callable[[str], T]  # raises ValueError for a malformed value


def _path(raw: str) -> Path:
    if "\0" in raw:
        raise ValueError("NUL in a path")
    return Path(raw)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _url(raw: str) -> str:
    if not _URL.fullmatch(raw):
        raise ValueError("not a URL")
    return raw


_DIGITS = re.compile(r"[0-9]+")


def _positive_int(raw: str) -> int:
    # int() alone would take "+5", "1_000" and other scripts' digits.
    if not _DIGITS.fullmatch(raw) or int(raw) <= 0:
        raise ValueError("not a whole number above zero")
    return int(raw)


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("not a finite number above zero")
    return value


_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def _branch(raw: str) -> str:
    """A branch name as `git check-ref-format --branch` takes it; never one that reads as an
    option of a git command."""
    if (
        raw in ("", "@")
        or raw.startswith(("-", "/", "."))
        or raw.endswith(("/", ".", ".lock"))
        or "/." in raw
        or _REF_FORBIDDEN.search(raw)
        or any(part.endswith(".lock") for part in raw.split("/"))
    ):
        raise ValueError("not a branch name")
    return raw


_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


def _slug(raw: str) -> str:
    if not _SLUG.fullmatch(raw) or raw.split("/")[1] in (".", ".."):
        raise ValueError("not owner/name")
    return raw


PATH = Kind("path", "a path", "/var/lib/formarket", _path)
URL = Kind("url", "a URL", "redis://localhost:6379/0", _url)
SECONDS = Kind("int", "a whole number of seconds above zero", "3600", _positive_int)
FLOAT_SECONDS = Kind("float", "a number of seconds above zero", "30", _positive_float)
BRANCH_NAME = Kind("branch", "a branch name", "main", _branch)
OWNER_NAME = Kind("owner/name", "a GitHub repository, owner/name", "acme/marketplace", _slug)
FLAG = Kind("flag", "any value to turn it on", "1", lambda raw: bool(raw))
TEXT = Kind("str", "text", "", str)


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One environment variable: its type, default and meaning, and the flag that sets the
    same thing on the command line, if there is one."""

    name: str
    variable: str
    kind: Kind[T]
    help: str
    commands: tuple[str, ...]
    default: T | None = None  # None: unset, or computed from other settings (`shown` says how)
    shown: str = ""  # the default as people read it; from `default` when left out
    role: Role = "read"
    flag: str | None = None

    @property
    def shown_default(self) -> str:
        if self.shown:
            return self.shown
        return "none" if self.default is None else str(self.default)

    @property
    def fallback(self) -> T:
        """The default, for a setting that has a fixed one."""
        if self.default is None:
            raise LookupError(f"{self.variable} has no fixed default")
        return self.default

    def parse(self, raw: str) -> T:
        """`raw` (given, not empty) as this setting's type, or a UsageError naming it."""
        try:
            return self.kind.parse(raw)
        except ValueError as exc:
            example = f", such as {self.kind.example}" if self.kind.example else ""
            raise UsageError(
                f"{self.variable}={raw!r} is not {self.kind.expected}",
                hint=f"set it to {self.kind.expected}{example}, or unset it for the default"
                f" ({self.shown_default})",
            ) from exc

    def given(self, environ: Mapping[str, str] | None = None) -> str:
        """The variable's text in `environ` (default: the process environment); "" unset."""
        return (os.environ if environ is None else environ).get(self.variable, "").strip()

    def read(self, environ: Mapping[str, str] | None = None) -> T | None:
        """The value in `environ` (default: the process environment), else the default."""
        raw = self.given(environ)
        return self.parse(raw) if raw else self.default

    def get(self, environ: Mapping[str, str] | None = None) -> T:
        """As `read`, for a setting that has a fixed default."""
        value = self.read(environ)
        return self.fallback if value is None else value


_FARM = ("farm",)

REPO = Setting(
    "repo",
    "FORMARKET_REPO",
    PATH,
    "The marketplace repository (a git clone).",
    (
        "build",
        "check",
        "control",
        "deploy",
        "deployments",
        "farm",
        "gateway",
        "invoices",
        "issue-deploy",
        "new",
        "royalties",
        "site",
        "test",
        "usage",
        "weights",
    ),
    default=Path("."),
    shown="the repository holding the current folder",
    flag="--repo",
)
BRANCH = Setting(
    "branch",
    "FORMARKET_BRANCH",
    BRANCH_NAME,
    "The marketplace's branch: what is read, and what the bot commits to.",
    (
        "control",
        "deploy",
        "deployments",
        "farm",
        "invoices",
        "issue-deploy",
        "royalties",
        "test",
        "usage",
    ),
    default="main",
    flag="--branch",
)
STATE = Setting(
    "state",
    "FORMARKET_STATE",
    PATH,
    "The farm's state folder: the last reconcile cycle, the meter clock, beat's schedule,"
    " build scratch space, and the sqlite broker when there is no other. Not the gateway's"
    " (--gateway-dir).",
    ("control", "deploy", "deployments", "farm"),
    shown="<repo>/build/farm",
    flag="--state",
)
STORE = Setting(
    "store",
    "FORMARKET_STORE",
    PATH,
    "The artifact store: one folder per build id.",
    ("build", "farm", "test", "weights"),
    shown="<state>/store (the farm); ~/.cache/formarket/store or $XDG_CACHE_HOME/formarket/store"
    " (`formarket build`, `formarket test`)",
    flag="--store",
)
CACHE = Setting(
    "cache",
    "FORMARKET_CACHE",
    PATH,
    "The build cache: bases, step layers and weight files.",
    ("build", "farm", "test", "weights"),
    shown="<state>/cache (the farm); <store>/cache (`formarket build`, `formarket test`)",
    flag="--cache",
)
BASE_CACHE = Setting(
    "base_cache",
    "FORMARKET_BASE_CACHE",
    PATH,
    "Where bases are kept, when not in the build cache.",
    ("farm", "test"),
    shown="none: bases stay in the build cache",
)
HOSTS = Setting(
    "hosts",
    "FORMARKET_HOSTS",
    PATH,
    "The host inventory file: the libvirt hosts deployments may be placed on"
    " (builder/hosts.example.yaml is an example).",
    ("control", "deploy", "farm", "issue-deploy"),
    shown="none: nowhere to deploy",
)
BROKER_URL = Setting(
    "broker_url",
    "FORMARKET_BROKER_URL",
    URL,
    "The Celery broker, which also keeps the reconciler's leases. It may hold a password.",
    _FARM,
    shown="none: sqlite files in the farm's state folder",
)
RESULT_BACKEND = Setting(
    "result_backend",
    "FORMARKET_RESULT_BACKEND",
    URL,
    "Where task results and progress go.",
    _FARM,
    shown="the broker when it is Redis, else a sqlite file in the farm's state folder",
)
BUILD_TIME_LIMIT = Setting(
    "build_time_limit",
    "FORMARKET_BUILD_TIME_LIMIT",
    SECONDS,
    "Seconds a build may take before it is stopped.",
    _FARM,
    default=3600,
)
VISIBILITY_TIMEOUT = Setting(
    "visibility_timeout",
    "FORMARKET_VISIBILITY_TIMEOUT",
    SECONDS,
    "Seconds before Redis hands an unacknowledged task to another worker; longer than the"
    " build time limit.",
    _FARM,
    shown="the build time limit plus a quarter, at least a minute more (4500)",
)
RECONCILE_SECONDS = Setting(
    "reconcile_seconds",
    "FORMARKET_RECONCILE_SECONDS",
    FLOAT_SECONDS,
    "How often beat runs the reconciler, in seconds.",
    _FARM,
    default=30.0,
    shown="30",
)
GITHUB_REPO = Setting(
    "github_repo",
    "FORMARKET_GITHUB_REPO",
    OWNER_NAME,
    "Where the farm comments on deployment issues once they answer (with GITHUB_TOKEN).",
    _FARM,
    shown="none: no comments",
)
GATEWAY_URL = Setting(
    "gateway_url",
    "FORMARKET_GATEWAY_URL",
    URL,
    "The gateway's address: the farm's comments on issues give it to callers, and the VM"
    " hosts forward agents' model calls to it, so it must be the gateway's own http://host:port"
    " as the hosts reach it. The control plane gives it to users as their deployments' endpoint.",
    ("control", "farm"),
    default="http://127.0.0.1:8080",
)
GATEWAY_DIR = Setting(
    "gateway_dir",
    "FORMARKET_GATEWAY_DIR",
    PATH,
    "The gateway's state folder: API keys, routes, quota counts, the usage spool, and the"
    " accounts database and pseudonym key by default. Not the farm's (--state).",
    ("control", "deploy", "deployments", "farm", "gateway", "royalties", "usage"),
    shown="<repo>/.git/formarket-gateway (<repo>/formarket-gateway when bare)",
    flag="--gateway-dir",
)
CACHE_DIR = Setting(
    "cache_dir",
    "FORMARKET_CACHE_DIR",
    PATH,
    "Where check results are kept, so unchanged documents are not checked again, and what the"
    " royalties and `usage show` read: the listings' history, and what each usage file holds"
    " under the rules of a reading (about 25 bytes an event), so no usage file is read twice.",
    ("check", "validate", "royalties", "usage"),
    shown="<repo>/.git/formarket-cache (.formarket-cache in a plain folder)",
)
BOT_KEY = Setting(
    "bot_key",
    "FORMARKET_BOT_KEY",
    PATH,
    "The bot's OpenSSH ed25519 private key, kept outside the repository: the bot's commits"
    " (usage, deployments, closes) are signed with it, and usage counts only in commits signed"
    " by the key registry/governance.yaml names.",
    ("farm", "gateway", "royalties"),
    shown="none: commits are not signed",
)
CACHE_KEY = Setting(
    "cache_key",
    "FORMARKET_CACHE_KEY",
    PATH,
    "The key file that signs cached check results, so that only this machine's own earlier"
    " runs are trusted; made on first use, readable by its owner only. Keep it outside every"
    " repository and never share it.",
    ("check", "royalties", "site", "usage", "validate"),
    shown="$XDG_STATE_HOME/formarket/cache.key (~/.local/state/formarket/cache.key)",
)
PSEUDONYM_KEY = Setting(
    "pseudonym_key",
    "FORMARKET_PSEUDONYM_KEY",
    PATH,
    "The key of accounts' pseudonyms: what the bot commits (deployments, usage events, commit"
    " messages) names an account only by `acct_` and a keyed hash of its login under this key."
    " Made on first use, readable by its owner (and at most its group); keep it outside every"
    " repository, share it between the gateways, the farm and the control plane, and back it"
    " up with the accounts database: another key gives every account another pseudonym.",
    ("control", "deploy", "deployments", "farm", "gateway", "issue-deploy", "usage"),
    shown="<gateway-dir>/pseudonym.key",
)
DATABASE_URL = Setting(
    "database_url",
    "FORMARKET_DATABASE_URL",
    URL,
    "The accounts database (accounts, their API keys, sign-in sessions, prepaid credit),"
    " shared by every gateway, the control plane and the farm (which charges instance time"
    " to it): postgresql://user@host/db, or sqlite:////path/file. It may hold a password.",
    ("control", "farm", "gateway"),
    shown="sqlite: accounts.sqlite in the gateway's folder (--gateway-dir)",
)
GITHUB_CLIENT_ID = Setting(
    "github_client_id",
    "FORMARKET_GITHUB_CLIENT_ID",
    TEXT,
    "The GitHub OAuth app's client id that people sign in to (the device flow for `formarket"
    " login`, the web flow for the dashboard). GitHub's addresses are GITHUB_SERVER_URL and"
    " GITHUB_API_URL, as GitHub Actions names them; point both at the GitHub stand-in to sign"
    " in locally.",
    ("control",),
    shown="none: signing in is off",
)
GITHUB_CLIENT_SECRET = Setting(
    "github_client_secret",
    "FORMARKET_GITHUB_CLIENT_SECRET",
    TEXT,
    "That OAuth app's client secret (the web flow needs it; the device flow does not).",
    ("control",),
    shown="none",
)
CONTROL_URL = Setting(
    "control_url",
    "FORMARKET_CONTROL_URL",
    URL,
    "The control plane's address (`formarket control serve`), where `formarket login` signs"
    " in and `formarket keys` manages keys.",
    ("balance", "invoices", "keys", "login", "logout", "subscriptions", "topup"),
    default="http://127.0.0.1:8090",
    flag="--control-url",
)
PAYMENTS_URL = Setting(
    "payments_url",
    "FORMARKET_PAYMENTS_URL",
    URL,
    "The payment provider's API that top-ups and creators' payouts go through (Stripe's, or"
    " the stand-in's: `python -m formarket.standins.payments`).",
    ("control", "royalties"),
    default="https://api.stripe.com",
)
PAYMENTS_KEY = Setting(
    "payments_key",
    "FORMARKET_PAYMENTS_KEY",
    TEXT,
    "The payment provider's secret API key (sk_...). Keep it out of every repository.",
    ("control", "royalties"),
    shown="none: top-ups and payouts are off",
)
PAYMENTS_WEBHOOK_SECRET = Setting(
    "payments_webhook_secret",
    "FORMARKET_PAYMENTS_WEBHOOK_SECRET",
    TEXT,
    "The signing secret of the provider's webhook endpoint (whsec_...), which"
    " /v1/payments/webhook verifies every top-up's webhook with.",
    ("control",),
    shown="none",
)
WEIGHTS_ALLOW_PRIVATE = Setting(
    "weights_allow_private",
    "FORMARKET_WEIGHTS_ALLOW_PRIVATE",
    FLAG,
    "Let builds fetch weight files from addresses on the build host's private networks (a"
    " mirror inside them). Off, a listing's URL cannot make the farm reach its own network.",
    _FARM,
    default=False,
    shown="off",
)
DEBUG = Setting(
    "debug",
    "FORMARKET_DEBUG",
    FLAG,
    "Print the traceback of an unexpected error (a bug) instead of one line.",
    (EVERY_COMMAND,),
    default=False,
    shown="off",
)


def _named(variable: str, role: Role, help: str) -> Setting[str]:
    return Setting(variable.removeprefix("FORMARKET_").lower(), variable, TEXT, help, (), role=role)


TABLE: tuple[Setting[Any], ...] = (
    REPO,
    BRANCH,
    STATE,
    STORE,
    CACHE,
    BASE_CACHE,
    HOSTS,
    BROKER_URL,
    RESULT_BACKEND,
    BUILD_TIME_LIMIT,
    VISIBILITY_TIMEOUT,
    RECONCILE_SECONDS,
    GITHUB_REPO,
    GATEWAY_URL,
    GATEWAY_DIR,
    CACHE_DIR,
    BOT_KEY,
    CACHE_KEY,
    PSEUDONYM_KEY,
    DATABASE_URL,
    GITHUB_CLIENT_ID,
    GITHUB_CLIENT_SECRET,
    CONTROL_URL,
    PAYMENTS_URL,
    PAYMENTS_KEY,
    PAYMENTS_WEBHOOK_SECRET,
    WEIGHTS_ALLOW_PRIVATE,
    DEBUG,
    _named("FORMARKET_DEPLOYMENT", "vm", "The deployment's id."),
    _named("FORMARKET_LISTING", "vm", "The id of the listing it runs."),
    _named("FORMARKET_LISTING_VERSION", "vm", "That listing's version."),
    _named(
        "FORMARKET_SETTINGS",
        "vm",
        "The deployment's settings as JSON (each top-level value is SETTING_<KEY> too).",
    ),
    _named(
        "FORMARKET_KEY",
        "named",
        "The caller's gateway key in the farm's comment on a deployment issue: a shell"
        " variable the reader sets.",
    ),
    _named(
        "FORMARKET_API_KEY",
        "named",
        "The caller's gateway key in the example calls of the listings' READMEs.",
    ),
    _named(
        "FORMARKET_WORKER_ARGS",
        "named",
        "More arguments for `formarket farm worker` in the example systemd unit"
        " (docs/operations/examples/formarket-worker@.service).",
    ),
    _named(
        "FORMARKET_TEST_CACHE",
        "named",
        "The test suite's shared build cache for bases (default build/test-cache).",
    ),
)

_BY_VARIABLE = {setting.variable: setting for setting in TABLE}


def by_variable(variable: str) -> Setting[Any] | None:
    return _BY_VARIABLE.get(variable)


_USERINFO = re.compile(r"(?P<head>^[^:/]+://[^/@]*?:)[^/@]*(?=@)")


def shown_value(setting: Setting[Any], raw: str) -> str:
    """`raw` as it may be printed: a URL's password is left out."""
    return _USERINFO.sub(r"\g<head>***", raw) if setting.kind is URL else raw


_ROLES: tuple[tuple[Role, str, str], ...] = (
    ("read", "Read by formarket", ""),
    (
        "vm",
        "Set for a deployment's VM",
        "The farm passes these to each deployment (with MODEL_ENDPOINT and its secrets);"
        " formarket itself does not read them.",
    ),
    (
        "named",
        "Only named",
        "These appear in text, example units or the test suite; formarket does not read them.",
    ),
)


def _cell(text: str) -> str:
    # `<repo>` would read as an HTML tag.
    return text.replace("|", "\\|").replace("<", "\\<").replace("\n", " ")


def render_markdown() -> str:
    """docs/settings.md: the table as people read it."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from src/formarket/settings.py by"
        " `formarket settings --markdown > docs/settings.md`; do not edit by hand. -->",
        "",
        "Every `FORMARKET_*` variable. An unset or empty variable means its default; a malformed"
        " one stops the command with an error that names it. A setting with an option can be"
        " given on the command line too, and the option wins over the variable: the same option"
        " means the same thing in every command. `formarket settings` shows each one's current"
        " value.",
    ]
    for role, title, intro in _ROLES:
        lines += ["", f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        rows = [s for s in TABLE if s.role == role]
        if role == "read":
            lines += [
                "| Variable | Option | Type | Default | Used by | What it is |",
                "|---|---|---|---|---|---|",
            ]
            for s in rows:
                used = (
                    "every command"
                    if s.commands == (EVERY_COMMAND,)
                    else ", ".join(f"`{c}`" for c in s.commands)
                )
                flag = f"`{s.flag}`" if s.flag else ""
                lines.append(
                    f"| `{s.variable}` | {flag} | {s.kind.name} | {_cell(s.shown_default)}"
                    f" | {used} | {_cell(s.help)} |"
                )
        else:
            lines += ["| Variable | What it is |", "|---|---|"]
            lines += [f"| `{s.variable}` | {_cell(s.help)} |" for s in rows]
    return "\n".join(lines) + "\n"
