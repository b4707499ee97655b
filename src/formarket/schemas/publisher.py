"""Publishers, and who may change what in the registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from formarket.schemas._base import Document
from formarket.schemas._types import GitHubLogin, HttpUrl, PublisherName

__all__ = ["Governance", "Payout", "Publisher"]


class Payout(Document):
    """Where a publisher's earnings go; a reference only, never an account number."""

    method: Literal["bank-transfer", "stripe-connect", "paypal", "crypto", "none"]
    reference: str = Field(
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
        description="The operator's reference for the payee (an id in the payout system).",
    )


class Publisher(Document):
    """A person or organisation that lists models and agents."""

    id: PublisherName = Field(description="Must match the file name.")
    name: str = Field(min_length=1, max_length=80)
    owners: tuple[GitHubLogin, ...] = Field(
        min_length=1, max_length=50, description="GitHub logins that may change its listings."
    )
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    website: HttpUrl | None = None
    description: str | None = Field(default=None, max_length=1000)
    payout: Payout | None = None


class Governance(Document):
    """Who runs the marketplace: `registry/governance.yaml`."""

    maintainers: tuple[GitHubLogin, ...] = Field(
        min_length=1, description="May change anything outside the listing folders."
    )
    bot: GitHubLogin = Field(
        description="The farm's identity; the only writer of deployments, usage and royalties."
    )
    deployers: tuple[GitHubLogin, ...] = Field(
        default=(),
        description="May deploy through a deployment issue without a maintainer's `approved`"
        " label.",
    )
    bot_key: str | None = Field(
        default=None,
        pattern=r"^ssh-ed25519 [A-Za-z0-9+/]{68}(=|==)?( [ -~]{0,200})?$",
        description="The public half of the bot's SSH signing key (`ssh-ed25519 AAAA...`):"
        " usage counts only in commits signed with it, in git's SSH signature format"
        " (`git verify-commit` checks them). Without it, usage counts in commits whose"
        " author and committer are the bot.",
    )
