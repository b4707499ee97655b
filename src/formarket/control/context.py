"""What the control plane works with, passed in whole so that tests build it from real parts:
the accounts database, the farm's settings (the marketplace clone the bot commits to), GitHub's
sign-in, the gateway's address that callers use, the payment provider (None: top-ups are
off), and the rate limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from formarket.accounts.credit import CreditStore
from formarket.accounts.github_login import GitHubLogin
from formarket.accounts.store import AccountStore
from formarket.control.deployments import DeploymentIndex
from formarket.control.limits import RateLimiter
from formarket.control.payments import Payments
from formarket.farm.settings import FarmSettings

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
    index: DeploymentIndex = field(init=False)
    credit: CreditStore = field(init=False)

    def __post_init__(self) -> None:
        self.index = DeploymentIndex(self.farm)
        self.credit = CreditStore(self.store.engine)
