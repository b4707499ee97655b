"""The accounts, their keys and sessions: every read and write of the accounts database.

Each method takes the account it acts for, and a key or session of another account is
answered exactly as one that does not exist: an id never tells a caller whether it is someone
else's.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from formarket.accounts.keyformat import hash_secret, new_key, parse_key, secret_matches
from formarket.accounts.models import Account, ApiKey, Generation, LoginState, Session
from formarket.accounts.pseudonym import is_pseudonym
from formarket.accounts.watch import NOTIFY_CHANNEL, POLL_SECONDS
from formarket.errors import InputError, NotFoundError, UsageError
from formarket.schemas.usage import ACCOUNT_PATTERN, DEPLOYMENT_PATTERN

__all__ = ["AccountStore", "AccountView", "KeyGrant", "KeyView"]

_ACCOUNT_RE = re.compile(ACCOUNT_PATTERN)
_DEPLOYMENT_RE = re.compile(DEPLOYMENT_PATTERN)
_KEY_ID_RE = re.compile(r"[0-9a-f]{12}")
_NAME_MAX = 100
_KEYS_PER_ACCOUNT = 100


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back what it was given without its zone; everything stored is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    login: str
    github_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as its account sees it again: never its secret, only its last four characters."""

    id: str
    account: str
    name: str
    deployment: str | None
    last4: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def shown(self) -> str:
        return f"fmk_{self.id}_…{self.last4}"

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What the gateway needs of a valid key."""

    id: str
    account: str
    deployment: str | None
    expires_at: datetime | None
    account_id: int = 0


def _view(key: ApiKey, login: str) -> KeyView:
    return KeyView(
        id=key.id,
        account=login,
        name=key.name,
        deployment=key.deployment,
        last4=key.last4,
        created_at=_utc(key.created_at) or key.created_at,
        expires_at=_utc(key.expires_at),
        revoked_at=_utc(key.revoked_at),
    )


def _account_view(row: Account) -> AccountView:
    return AccountView(row.id, row.login, row.github_id, _utc(row.created_at) or row.created_at)


class AccountStore:
    """The accounts database, through an engine from `open_database`."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    # --- accounts --------------------------------------------------------------------------

    def sign_in(self, login: str, github_id: int | None) -> AccountView:
        """The account of a GitHub user, made on first sign-in. GitHub's id is what stays:
        a renamed user keeps their account under the new login."""
        if not _ACCOUNT_RE.match(login) or is_pseudonym(login):
            # A login shaped as a pseudonym would own what git names by that pseudonym.
            raise InputError(f"{login!r} is not a GitHub login")
        with self._sessions.begin() as db:
            row = None
            if github_id is not None:
                row = db.scalar(select(Account).where(Account.github_id == github_id))
            if row is None:
                row = db.scalar(select(Account).where(Account.login == login))
                if row is not None and row.github_id not in (None, github_id):
                    # The login was given up and taken by another GitHub user: the old
                    # account stays its former owner's, under its id.
                    row.login = f"{row.login}@{row.github_id}"
                    db.flush()
                    row = None
            if row is None:
                row = Account(login=login, github_id=github_id, created_at=self._clock())
                db.add(row)
            else:
                row.login = login
                row.github_id = github_id if github_id is not None else row.github_id
            db.flush()
            return _account_view(row)

    def ids(self) -> list[tuple[int, str]]:
        """Every account's id and login, by login."""
        with self._sessions() as db:
            rows = db.execute(select(Account.id, Account.login).order_by(Account.login)).all()
        return [(account_id, login) for account_id, login in rows]

    def account(self, login: str) -> AccountView | None:
        with self._sessions() as db:
            row = db.scalar(select(Account).where(Account.login == login))
            return None if row is None else _account_view(row)

    # --- keys ------------------------------------------------------------------------------

    def create_key(
        self,
        account: AccountView,
        *,
        name: str = "",
        deployment: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, KeyView]:
        """A new key of `account`: the key itself (shown once, never stored) and its view."""
        if len(name) > _NAME_MAX or any(not ch.isprintable() for ch in name):
            raise UsageError(f"a key's name is at most {_NAME_MAX} printable characters")
        if deployment is not None and not _DEPLOYMENT_RE.match(deployment):
            raise UsageError(f"{deployment!r} is not a deployment id")
        now = self._clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise UsageError("a key's expiry needs its time zone, such as ...Z")
            if expires_at <= now:
                raise UsageError("a key's expiry must be in the future")
        with self._sessions.begin() as db:
            count = len(db.scalars(select(ApiKey.id).where(ApiKey.account_id == account.id)).all())
            if count >= _KEYS_PER_ACCOUNT:
                raise UsageError(
                    f"an account has at most {_KEYS_PER_ACCOUNT} keys",
                    hint="revoke keys no longer used (`formarket keys revoke ID`)",
                )
            while True:
                key, key_id, secret = new_key()
                if db.get(ApiKey, key_id) is None:
                    break
            row = ApiKey(
                id=key_id,
                account_id=account.id,
                sha256=hash_secret(secret),
                last4=secret[-4:],
                name=name,
                deployment=deployment,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
            db.add(row)
            db.flush()
            return key, _view(row, account.login)

    def keys(self, account: AccountView) -> list[KeyView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(ApiKey)
                .where(ApiKey.account_id == account.id)
                .order_by(ApiKey.created_at, ApiKey.id)
            ).all()
            return [_view(row, account.login) for row in rows]

    def key(self, account: AccountView, key_id: str) -> KeyView:
        with self._sessions() as db:
            return _view(self._own_key(db, account, key_id), account.login)

    def revoke_key(self, account: AccountView, key_id: str) -> KeyView:
        """Revoke one of `account`'s keys; the gateways refuse it from their next call on."""
        with self._sessions.begin() as db:
            row = self._own_key(db, account, key_id)
            bumped = row.revoked_at is None
            if bumped:
                row.revoked_at = self._clock()
                self._bump(db)
            db.flush()
            view = _view(row, account.login)
        if bumped and self.engine.dialect.name == "postgresql":
            # Every gateway has heard the NOTIFY or reads the row on its next call by now.
            time.sleep(POLL_SECONDS * 1.2)
        return view

    def _own_key(self, db: OrmSession, account: AccountView, key_id: str) -> ApiKey:
        row = db.get(ApiKey, key_id) if _KEY_ID_RE.fullmatch(key_id) else None
        if row is None or row.account_id != account.id:
            raise NotFoundError(
                f"no key {key_id!r} in your account",
                hint="`formarket keys list` shows your keys",
            )
        return row

    def _bump(self, db: OrmSession) -> None:
        db.execute(update(Generation).where(Generation.id == 1).values(value=Generation.value + 1))
        if self.engine.dialect.name == "postgresql":
            # Sent when the transaction commits, to every gateway listening (accounts.watch).
            db.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    def generation(self) -> int:
        """A number that changes whenever a key stops being valid before its time."""
        with self._sessions() as db:
            return db.scalar(select(Generation.value).where(Generation.id == 1)) or 0

    def authenticate(self, presented: str) -> KeyGrant | None:
        """The grant of a presented account key when it is well formed, its secret matches,
        and it is neither revoked nor expired."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self._sessions() as db:
            found = db.execute(
                select(ApiKey, Account.login)
                .join(Account, Account.id == ApiKey.account_id)
                .where(ApiKey.id == key_id)
            ).first()
        if found is None:
            return None
        row, login = found
        if not secret_matches(row.sha256, secret):
            return None
        view = _view(row, login)
        if not view.usable(self._clock()):
            return None
        return KeyGrant(view.id, login, view.deployment, view.expires_at, row.account_id)

    # --- sessions --------------------------------------------------------------------------

    def start_session(self, account: AccountView, ttl: timedelta) -> str:
        """A new session token for a signed-in browser (stored only as its SHA-256)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions.begin() as db:
            db.add(
                Session(
                    sha256=hash_secret(token),
                    account_id=account.id,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return token

    def session_account(self, token: str) -> AccountView | None:
        if not 0 < len(token) <= 100:
            return None
        with self._sessions() as db:
            found = db.execute(
                select(Session, Account)
                .join(Account, Account.id == Session.account_id)
                .where(Session.sha256 == hash_secret(token))
            ).first()
        if found is None:
            return None
        session, row = found
        expires = _utc(session.expires_at)
        if expires is None or expires <= self._clock():
            return None
        return _account_view(row)

    def end_session(self, token: str) -> None:
        with self._sessions.begin() as db:
            db.execute(delete(Session).where(Session.sha256 == hash_secret(token)))

    # --- web-flow sign-ins in progress -----------------------------------------------------

    def keep_login_state(self, state: str, ttl: timedelta) -> None:
        now = self._clock()
        with self._sessions.begin() as db:
            # Old ones go as new ones come, so that abandoned sign-ins do not pile up.
            db.execute(delete(LoginState).where(LoginState.expires_at <= now))
            db.add(LoginState(sha256=hash_secret(state), expires_at=now + ttl))

    def take_login_state(self, state: str) -> bool:
        """True once for a state kept and not expired; False for any other, and ever after."""
        if not 0 < len(state) <= 100:
            return False
        with self._sessions.begin() as db:
            row = db.get(LoginState, hash_secret(state))
            if row is None:
                return False
            db.delete(row)
            expires = _utc(row.expires_at)
            return expires is not None and expires > self._clock()
