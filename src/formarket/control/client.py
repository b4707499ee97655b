"""The control plane's client, as the command line uses it: signing in with GitHub's device
flow, keys, and where the key is kept on this machine.

The key is kept in `$XDG_CONFIG_HOME/formarket/credentials.json` (~/.config/formarket/...),
readable by its owner only (0600), with the control plane's address and the account's login.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formarket.accounts.github_login import DeviceCode, GitHubLogin
from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError, InputError, NotFoundError, UsageError
from formarket.httpclient import Client, Transport

__all__ = ["ControlClient", "ControlError", "Credentials", "credentials_path", "sign_in"]


class ControlError(FormarketError):
    """The control plane refused a request; its message and hint are the server's."""


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "formarket" / "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    control_url: str
    account: str
    key: str
    key_id: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(
            {
                "control_url": self.control_url,
                "account": self.account,
                "key": self.key,
                "key_id": self.key_id,
            },
            indent=2,
        )
        write_atomically(path, data.encode() + b"\n", mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            data = json.loads(path.read_bytes())
            return cls(
                str(data["control_url"]),
                str(data["account"]),
                str(data["key"]),
                str(data["key_id"]),
            )
        except FileNotFoundError:
            raise UsageError("not signed in", hint="`formarket login` signs in") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path} is not formarket's credentials file",
                hint="`formarket logout`, then `formarket login` again",
            ) from exc


class ControlClient:
    def __init__(
        self, base_url: str, key: str | None = None, *, transport: Transport | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.base_url = base_url.rstrip("/")
        self._http = Client(self.base_url, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; a refusal raises with the server's message and hint."""
        return _json(self.raw(method, path, body))

    def raw(self, method: str, path: str, body: Any = None) -> bytes:
        """The answer's bytes as they came; a refusal raises with the server's message and
        hint."""
        answer = self._http.request(method, path, json=body)
        if answer.status_code >= 400:
            data = _json(answer.content)
            error = data.get("error", {}) if isinstance(data, dict) else {}
            error = error if isinstance(error, dict) else {}
            message = error.get("message") or f"HTTP {answer.status_code}"
            hint = error.get("hint") or ""
            kind = NotFoundError if answer.status_code == 404 else ControlError
            raise kind(f"the control plane at {self.base_url}: {message}", hint=hint)
        return answer.content

    def login_config(self) -> dict[str, str]:
        config: dict[str, str] = self.call("GET", "/v1/login/config")
        return config

    def sign_in(self, github_token: str, key_name: str) -> dict[str, Any]:
        body = {"github_token": github_token, "key_name": key_name}
        made: dict[str, Any] = self.call("POST", "/v1/login/github", body)
        return made

    def keys(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.call("GET", "/v1/keys")["keys"]
        return listed

    def create_key(
        self, name: str, deployment: str | None, expires_at: str | None
    ) -> dict[str, Any]:
        body = {"name": name, "deployment": deployment, "expires_at": expires_at}
        made: dict[str, Any] = self.call("POST", "/v1/keys", body)
        return made

    def balance(self) -> dict[str, Any]:
        shown: dict[str, Any] = self.call("GET", "/v1/balance")
        return shown

    def top_up(self, amount: str) -> dict[str, Any]:
        made: dict[str, Any] = self.call("POST", "/v1/topups", {"amount": amount})
        return made

    def invoices(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.call("GET", "/v1/invoices")["invoices"]
        return listed

    def invoice(self, period: str) -> bytes:
        """The invoice of `period` as the exact bytes whose SHA-256 its close committed."""
        return self.raw("GET", f"/v1/invoices/{period}")

    def subscriptions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.call("GET", "/v1/subscriptions")["subscriptions"]
        return listed

    def subscribe(self, listing: str, tier: str) -> dict[str, Any]:
        made: dict[str, Any] = self.call(
            "POST", "/v1/subscriptions", {"listing": listing, "tier": tier}
        )
        return made

    def cancel_subscription(self, subscription_id: str) -> dict[str, Any]:
        cancelled: dict[str, Any] = self.call("DELETE", f"/v1/subscriptions/{subscription_id}")
        return cancelled

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        revoked: dict[str, Any] = self.call("DELETE", f"/v1/keys/{key_id}")
        return revoked


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def sign_in(
    control_url: str,
    key_name: str,
    show: Callable[[DeviceCode], None],
    *,
    github: Callable[[str, str], GitHubLogin] | None = None,
) -> Credentials:
    """GitHub's device flow against the control plane's OAuth app, then a new account key:
    `show` tells the user the code and where to enter it."""
    with ControlClient(control_url) as control:
        config = control.login_config()
        if not config.get("client_id"):
            raise ControlError(
                f"the control plane at {control_url} has no GitHub sign-in configured",
                hint="its operator sets FORMARKET_GITHUB_CLIENT_ID",
            )
        make = github or (lambda client_id, server: GitHubLogin(client_id, server_url=server))
        login = make(config["client_id"], config["server_url"])
        try:
            device = login.start_device()
            show(device)
            token = login.finish_device(device)
        finally:
            login.close()
        made = control.sign_in(token, key_name)
    return Credentials(control_url, made["account"], made["key"], made["details"]["id"])
