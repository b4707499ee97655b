"""Accounts: GitHub logins, the API keys they manage, their sign-in sessions.

database   opening the database (SQLite by default, PostgreSQL when configured), upgraded
           by Alembic's migrations on open
models     the tables
keyformat  the form of a key (`fmk_<id>_<secret>`), shared with the operator's keys
store      every read and write, for one account at a time
credit     prepaid credit: balances, the slices of them gateways lease, top-ups credited once
subscriptions  tiers subscribed to, each period charged once from the balance
included   subscriptions' included usage per period, and the slices of it gateways lease
pseudonym  the only name an account has in git: a keyed hash of its login
"""

from formarket.accounts.credit import BalanceView, CreditStore, TopUpView
from formarket.accounts.database import database_url, open_database
from formarket.accounts.keyformat import KEY_PATTERN, parse_key
from formarket.accounts.pseudonym import Pseudonyms, is_pseudonym, load_pseudonyms
from formarket.accounts.store import AccountStore, AccountView, KeyGrant, KeyView

__all__ = [
    "KEY_PATTERN",
    "AccountStore",
    "AccountView",
    "BalanceView",
    "CreditStore",
    "KeyGrant",
    "KeyView",
    "Pseudonyms",
    "TopUpView",
    "database_url",
    "is_pseudonym",
    "load_pseudonyms",
    "open_database",
    "parse_key",
]
