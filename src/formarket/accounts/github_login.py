"""Signing in with GitHub: the device flow for the command line, the web flow for the browser,
and asking GitHub who a token belongs to.

The OAuth messages (the authorization address, the token requests, reading the browser's
return with its state) are authlib's; the requests go through formarket.httpclient, as every
HTTP request formarket makes does. Two base URLs, as GitHub has them: the server
(https://github.com, GITHUB_SERVER_URL) for OAuth, and the API (https://api.github.com,
GITHUB_API_URL) for `GET /user`; the GitHub stand-in serves both at one address.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.errors import MismatchingStateException, MissingCodeException
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE

from formarket.errors import FormarketError, InputError
from formarket.httpclient import Client, Transport

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_SERVER_URL",
    "DeviceCode",
    "GitHubLogin",
    "GitHubUser",
    "LoginError",
]

DEFAULT_SERVER_URL = "https://github.com"
DEFAULT_API_URL = "https://api.github.com"
_TOKEN = re.compile(r"[\x21-\x7e]{1,255}")
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


class LoginError(FormarketError):
    """Signing in with GitHub did not succeed (denied, expired, a forged or replayed return)."""


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


@dataclass(frozen=True, slots=True)
class GitHubUser:
    login: str
    id: int


class GitHubLogin:
    """An OAuth app's sign-in with GitHub (client id and, for the web flow, its secret)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str = "",
        *,
        server_url: str = DEFAULT_SERVER_URL,
        api_url: str = DEFAULT_API_URL,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.server_url = server_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self._http = Client(timeout=30, transport=transport)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def _post_form(self, url: str, body: str) -> dict[str, Any]:
        answer = self._http.post(url, content=body.encode(), headers=_FORM)
        if answer.status_code >= 400:
            raise LoginError(
                f"GitHub refused the sign-in request ({answer.status_code})",
                hint="check the OAuth app's client id (and secret) and GITHUB_SERVER_URL",
            )
        try:
            data = answer.json()
        except ValueError:
            # GitHub answers form-encoded when it does not take the Accept header.
            data = dict(parse_qsl(answer.text))
        if not isinstance(data, dict):
            raise InputError(f"GitHub answered {url} with something that is not an object")
        return data

    # --- the device flow -------------------------------------------------------------------

    def start_device(self, scope: str = "read:user") -> DeviceCode:
        data = self._post_form(
            f"{self.server_url}/login/device/code",
            urlencode({"client_id": self.client_id, "scope": scope}),
        )
        if "error" in data:
            raise LoginError(
                f"GitHub would not start a sign-in: {data['error']}",
                hint="check the OAuth app's client id and that its device flow is enabled",
            )
        try:
            return DeviceCode(
                str(data["device_code"]),
                str(data["user_code"]),
                str(data["verification_uri"]),
                int(data.get("expires_in", 900)),
                int(data.get("interval", 5)),
            )
        except (KeyError, ValueError) as exc:
            raise InputError(f"GitHub's device code answer lacks {exc}") from exc

    def finish_device(
        self, device: DeviceCode, *, clock: Callable[[], float] = time.monotonic
    ) -> str:
        """Poll until the user has entered the code: the access token. LoginError when they
        denied it or the code expired."""
        interval = max(device.interval, 0)
        deadline = clock() + device.expires_in
        while clock() < deadline:
            self._sleep(interval)
            data = self._post_form(
                f"{self.server_url}/login/oauth/access_token",
                prepare_token_request(
                    DEVICE_CODE_GRANT_TYPE,
                    client_id=self.client_id,
                    device_code=device.device_code,
                ),
            )
            error = data.get("error")
            if error is None and "access_token" in data:
                return str(data["access_token"])
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval = int(data.get("interval", interval + 5))
                continue
            raise LoginError(
                f"the sign-in did not complete: {error or 'no token in the answer'}",
                hint="run `formarket login` again and enter the code it shows",
            )
        raise LoginError("the sign-in code expired", hint="run `formarket login` again")

    # --- the web flow ----------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, scope: str = "read:user") -> tuple[str, str]:
        """(the address to send the browser to, the state to keep for its return)."""
        state = generate_token(32)
        url = prepare_grant_uri(
            f"{self.server_url}/login/oauth/authorize",
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
        )
        return url, state

    def finish_web(self, callback_url: str, state: str, redirect_uri: str) -> str:
        """The access token for the browser's return to `callback_url`, whose state must be
        the one kept for it."""
        try:
            params: Mapping[str, str] = parse_authorization_code_response(callback_url, state)
        except (MismatchingStateException, MissingCodeException) as exc:
            raise LoginError(
                "the return from GitHub does not match a sign-in started here",
                hint="start signing in again from the sign-in page",
            ) from exc
        data = self._post_form(
            f"{self.server_url}/login/oauth/access_token",
            prepare_token_request(
                "authorization_code",
                code=params["code"],
                redirect_uri=redirect_uri,
                client_id=self.client_id,
                client_secret=self.client_secret,
            ),
        )
        if "access_token" not in data:
            raise LoginError(
                f"GitHub did not give a token for that code: {data.get('error', 'none')}",
                hint="start signing in again from the sign-in page",
            )
        return str(data["access_token"])

    # --- who it is -------------------------------------------------------------------------

    def user(self, token: str) -> GitHubUser:
        if not _TOKEN.fullmatch(token):
            # It goes into a header: no spaces, no line breaks, nothing but visible ASCII.
            raise LoginError("that is not a GitHub token", hint="sign in again")
        answer = self._http.get(
            f"{self.api_url}/user",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
        )
        if answer.status_code == 401:
            raise LoginError("GitHub does not know that token", hint="sign in again")
        if answer.status_code != 200:
            raise LoginError(f"GitHub answered GET /user with {answer.status_code}")
        data = answer.json()
        login, user_id = data.get("login"), data.get("id")
        if not isinstance(login, str) or not isinstance(user_id, int) or isinstance(user_id, bool):
            raise InputError("GitHub's GET /user answer lacks a login and an id")
        return GitHubUser(login, user_id)
