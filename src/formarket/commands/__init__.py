"""The command groups of the `formarket` CLI, one module each, imported only when used so
that a quick command does not pay for the imports of a slow one."""

from __future__ import annotations

__all__ = ["COMMANDS"]

# Command name -> module in formarket.commands that defines it as `command`.
COMMANDS: dict[str, str] = {
    "balance": "balance",
    "build": "build",
    "check": "check",
    "control": "control",
    "demo": "demo",
    "deploy": "deploy",
    "deployments": "deployments",
    "formfile": "formfile",
    "farm": "farm",
    "gateway": "gateway",
    "invoices": "invoices",
    "issue-deploy": "issue_deploy",
    "keys": "keys",
    "login": "login",
    "logout": "logout",
    "new": "new",
    "royalties": "royalties",
    "rules": "rules",
    "schema": "schema",
    "settings": "settings",
    "site": "site",
    "subscriptions": "subscriptions",
    "test": "test",
    "topup": "topup",
    "usage": "usage",
    "validate": "validate",
    "weights": "weights",
}
