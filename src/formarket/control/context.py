"""What the control plane works with, passed in whole so that tests build it from real parts:
the accounts database, the farm's settings (the marketplace clone the bot commits to), GitHub's
sign-in, the gateway's address that callers use, the payment provider (None: top-ups are
off), the rate limits, and the accounts' pseudonyms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from formarket.accounts.credit import CreditStore
from formarket.accounts.github_login import GitHubLogin
from formarket.accounts.invoices import InvoiceStore
from formarket.accounts.pseudonym import Pseudonyms, load_pseudonyms
from formarket.accounts.store import AccountStore
from formarket.control.deployments import DeploymentIndex
from formarket.control.limits import RateLimiter
from formarket.control.payments import Payments
from formarket.farm.settings import FarmSettings
from formarket.farm.status import farm_pseudonyms

__all__ = ["Control"]


@dataclass
class Control:
    store: AccountStore
    farm: FarmSettings
    # A new sign-in client per use (its connections are closed after).
    github: Callable[[], GitHubLogin]
    gateway_url: str
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10.0, 40))
    sign_in_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(1.0, 10))
    max_body: int = 64 << 10
    payments: Payments | None = None
    # The gateway's state folder, where the pseudonym key is by default; None: where the farm
    # finds it (FORMARKET_GATEWAY_DIR, else beside the clone's git data).
    gateway_dir: Path | None = None
    # How git names accounts: read once, from the key the gateways and the farm share.
    pseudonyms: Pseudonyms = field(init=False)
    index: DeploymentIndex = field(init=False)
    credit: CreditStore = field(init=False)
    invoices: InvoiceStore = field(init=False)

    def __post_init__(self) -> None:
        self.pseudonyms = (
            farm_pseudonyms(self.farm)
            if self.gateway_dir is None
            else load_pseudonyms(self.gateway_dir)
        )
        self.index = DeploymentIndex(self.farm, self.pseudonyms)
        self.credit = CreditStore(self.store.engine)
        self.invoices = InvoiceStore(self.store.engine, self.pseudonyms)
