"""The payouts of a closed period as sent: one record per attempt to transfer a payout line
through the payment provider (`royalties/transfers/YYYY-MM.json`).

A closed period's folder never changes (it is recomputed byte for byte by `royalties verify`),
so what the provider answered lives beside it, in a file the bot only ever appends to: an
attempt, once recorded, is never rewritten, and a line refused by the provider is tried again
as a new attempt with a new idempotency key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from formarket.schemas._base import Document
from formarket.schemas._types import CurrencyCode, PublisherName
from formarket.schemas.usage import EventTime, Money, Period

__all__ = ["TransferAttempt", "Transfers"]

TransferReference = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_]{1,255}$"),
    Field(description="The provider's id of the transfer (tr_...)."),
]


class TransferAttempt(Document):
    """One request to the provider for one payout line, and what it answered."""

    publisher: PublisherName
    currency: CurrencyCode
    amount: Money = Field(description="The payout line's `paid`: what the close paid.")
    destination: str = Field(
        min_length=1, max_length=120, description="The publisher's payout reference at the close."
    )
    attempt: int = Field(ge=1, le=10_000, description="1 for the first try of this line, then 2...")
    idempotency_key: str = Field(
        min_length=1, max_length=255, description="Sent with the request; unique per attempt."
    )
    status: Literal["sent", "failed"]
    reference: TransferReference | None = None
    reason: str | None = Field(default=None, max_length=500, description="Why it was refused.")
    at: EventTime = Field(description="When the provider answered.")

    @model_validator(mode="after")
    def _answer_matches_status(self) -> TransferAttempt:
        if self.status == "sent" and (self.reference is None or self.reason is not None):
            raise ValueError("a sent transfer has a reference and no reason")
        if self.status == "failed" and (self.reason is None or self.reference is not None):
            raise ValueError("a failed transfer has a reason and no reference")
        return self


class Transfers(Document):
    format: Literal["formarket.royalty-transfers/1"] = "formarket.royalty-transfers/1"
    period: Period
    attempts: tuple[TransferAttempt, ...] = Field(description="In the order they were made.")
