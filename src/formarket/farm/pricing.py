"""The prices the farm charges by: each listing version's `pricing` as that version was first
published, from the price book the royalties rate usage with, so that what a deployment is
charged (a call at the gateway, an hour of its VM) is what the close rates it at."""

from __future__ import annotations

from collections.abc import Callable

from formarket.farm.settings import FarmSettings, open_market
from formarket.market.refs import branch_tip
from formarket.royalties.gitio import cache_dir_of, price_book
from formarket.royalties.pricebook import PriceBook

__all__ = ["Pricing", "published_pricing"]

# (listing id, version) -> its `pricing` as first published; None: not published (yet).
Pricing = Callable[[str, str], object | None]


def published_pricing(settings: FarmSettings) -> Pricing:
    """A lookup of published versions' pricing; the price book is read at most once per call
    of this, and only when a version is looked up."""
    books: list[PriceBook] = []

    def pricing(listing: str, version: str) -> object | None:
        if not books:
            repo = open_market(settings)
            try:
                books.append(
                    price_book(repo, branch_tip(repo, settings.branch), cache_dir_of(repo))
                )
            finally:
                repo.close()
        entry = books[0].get(listing, version)
        return None if entry is None else entry.pricing

    return pricing
