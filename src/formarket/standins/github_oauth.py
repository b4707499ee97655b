"""GitHub's sign-in, as the GitHub stand-in serves it: OAuth apps, the device flow, the web
flow and `GET /user`, in the shapes GitHub documents.

There is no password here: whoever types a login on the stand-in's pages is signed in as it,
which is what tests and the demo need. The rest is as strict as GitHub: a code or a device
code is good once, for the app it was made for (and the web flow's redirect address), and
only until it expires; polling faster than the interval is told to slow down.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["DEVICE_GRANT", "Answer", "OAuthApp", "OAuthStandIn"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_CODE_SECONDS = 600
_DEVICE_SECONDS = 900

# (status, content type, body, more headers)
Answer = tuple[int, str, bytes, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str
    # Where the web flow may send a browser back: addresses starting with this.
    callback: str = ""


@dataclass
class _Device:
    app: str
    user_code: str
    expires: float
    interval: int
    last_poll: float | None = None
    login: str | None = None
    denied: bool = False
    used: bool = False


@dataclass
class _Code:
    app: str
    login: str
    redirect_uri: str
    expires: float
    used: bool = False


@dataclass
class OAuthStandIn:
    """The sign-in half of the stand-in. `interval` is the device flow's polling interval."""

    base_url: Callable[[], str]
    apps: dict[str, OAuthApp] = field(default_factory=dict)
    interval: int = 5
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _users: dict[str, int] = field(default_factory=dict)
    _devices: dict[str, _Device] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    def add_app(self, client_id: str, client_secret: str, callback: str = "") -> OAuthApp:
        app = OAuthApp(client_id, client_secret, callback)
        self.apps[client_id] = app
        return app

    def user_id(self, login: str) -> int:
        with self._lock:
            return self._users.setdefault(login, 1000 + len(self._users))

    def rename(self, old: str, new: str) -> None:
        """A user renames themselves: same id, new login."""
        with self._lock:
            self._users[new] = self._users.pop(old)
            for token, login in self._tokens.items():
                if login == old:
                    self._tokens[token] = new

    def token_for(self, login: str) -> str:
        """An access token of `login`, as if they had signed in to some app."""
        self.user_id(login)
        token = "gho_" + secrets.token_urlsafe(27)
        with self._lock:
            self._tokens[token] = login
        return token

    def approve(self, user_code: str, login: str) -> bool:
        """The user types the code shown by the CLI and signs in as `login`."""
        self.user_id(login)
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code.strip().upper() and device.login is None:
                    device.login = login
                    return True
        return False

    def pending(self) -> list[str]:
        """The user codes shown and not yet entered (what a person would have in front of
        them: tests enter them)."""
        with self._lock:
            return [d.user_code for d in self._devices.values() if d.login is None and not d.used]

    def deny(self, user_code: str) -> None:
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code:
                    device.denied = True

    # --- HTTP ------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> Answer | None:
        """The answer to a sign-in request, or None when it is not one."""
        parts = urlsplit(target)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        form = dict(query)
        if method == "POST" and raw:
            kind = headers.get("content-type", "")
            if kind.startswith("application/json"):
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    form.update({str(k): str(v) for k, v in data.items()})
            else:
                form.update({k: v[0] for k, v in parse_qs(raw.decode("latin-1")).items()})
        wants_json = "json" in headers.get("accept", "")
        if path == "/login/device/code" and method == "POST":
            return _reply(self._device_code(form), wants_json)
        if path == "/login/oauth/access_token" and method == "POST":
            return _reply(self._access_token(form), wants_json)
        if path == "/login/oauth/authorize" and method == "GET":
            return self._authorize(query)
        if path == "/login/device" and method in ("GET", "POST"):
            return self._device_page(form)
        if path == "/user" and method == "GET":
            return self._user(headers.get("authorization", ""))
        return None

    def _device_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return {"error": "incorrect_client_credentials"}
        device_code = secrets.token_hex(20)
        user_code = f"{secrets.token_hex(2)}-{secrets.token_hex(2)}".upper()
        with self._lock:
            self._devices[device_code] = _Device(
                app.client_id, user_code, self.clock() + _DEVICE_SECONDS, self.interval
            )
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": f"{self.base_url()}/login/device",
            "expires_in": _DEVICE_SECONDS,
            "interval": self.interval,
        }

    def _access_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return {"error": "incorrect_client_credentials"}
        if form.get("grant_type") == DEVICE_GRANT:
            return self._device_token(app, form.get("device_code", ""))
        if not secrets.compare_digest(form.get("client_secret", ""), app.client_secret):
            return {"error": "incorrect_client_credentials"}
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            if (
                code is None
                or code.used
                or code.app != app.client_id
                or code.expires <= self.clock()
                or code.redirect_uri != form.get("redirect_uri", code.redirect_uri)
            ):
                if code is not None:
                    code.used = True  # a code tried wrongly is spent, as on GitHub
                return {"error": "bad_verification_code"}
            code.used = True
            login = code.login
        return self._grant(login)

    def _device_token(self, app: OAuthApp, device_code: str) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            device = self._devices.get(device_code)
            if device is None or device.app != app.client_id:
                return {"error": "incorrect_device_code"}
            if device.used or device.expires <= now:
                return {"error": "expired_token"}
            if device.denied:
                return {"error": "access_denied"}
            if device.last_poll is not None and now - device.last_poll < device.interval:
                device.interval += 5
                device.last_poll = now
                return {"error": "slow_down", "interval": device.interval}
            device.last_poll = now
            if device.login is None:
                return {"error": "authorization_pending"}
            device.used = True
            login = device.login
        return self._grant(login)

    def _grant(self, login: str) -> dict[str, Any]:
        return {"access_token": self.token_for(login), "token_type": "bearer", "scope": ""}

    def _authorize(self, query: Mapping[str, str]) -> Answer:
        app = self.apps.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if app is None or not redirect_uri or not redirect_uri.startswith(app.callback):
            return _page(400, "The application or its redirect address is not known.")
        login = query.get("login", "").strip()
        if not login:
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in query.items()
            )
            return _page(
                200,
                f'<form method="get" action="/login/oauth/authorize">{hidden}'
                '<label>Sign in to GitHub (stand-in) as <input name="login" autofocus></label>'
                ' <button type="submit">Authorize</button></form>',
            )
        self.user_id(login)
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = _Code(app.client_id, login, redirect_uri, self.clock() + 600)
        answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        sep = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{sep}{urlencode(answer)}"
        return 302, "text/plain", b"", (("Location", location),)

    def _device_page(self, form: Mapping[str, str]) -> Answer:
        user_code, login = form.get("user_code", ""), form.get("login", "").strip()
        if user_code and login:
            done = self.approve(user_code, login)
            return _page(200 if done else 404, "Signed in." if done else "No such code.")
        return _page(
            200,
            '<form method="post" action="/login/device">'
            '<label>Code <input name="user_code"></label>'
            ' <label>Sign in as <input name="login"></label>'
            ' <button type="submit">Continue</button></form>',
        )

    def _user(self, authorization: str) -> Answer:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            login = (
                self._tokens.get(token.strip()) if scheme.lower() in ("bearer", "token") else None
            )
        if login is None:
            return _json(401, {"message": "Bad credentials"})
        return _json(200, {"login": login, "id": self.user_id(login), "type": "User"})


def _json(status: int, answer: Any) -> Answer:
    return status, "application/json; charset=utf-8", json.dumps(answer).encode(), ()


def _reply(answer: dict[str, Any], wants_json: bool) -> Answer:
    # GitHub answers the token endpoints with 200 even for errors, form-encoded unless asked.
    if wants_json:
        return _json(200, answer)
    body = urlencode({k: str(v) for k, v in answer.items()}).encode()
    return 200, "application/x-www-form-urlencoded", body, ()


def _page(status: int, body: str) -> Answer:
    text = f"<!doctype html><title>GitHub (stand-in)</title><main>{body}</main>"
    return status, "text/html; charset=utf-8", text.encode(), ()
