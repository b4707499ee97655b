"""Money arithmetic: exact values, one rounding, allocations whose parts sum to the whole.

Amounts are computed exactly as fractions (a per-hour price times seconds over 3600 has no
finite decimal), rounded once per statement line to the currency's minor unit, and kept from
then on as integers of minor units, so that sums are exact. Floats never appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from formarket.errors import InputError

__all__ = [
    "MINOR_UNITS",
    "Rounding",
    "allocate",
    "allocate_counts",
    "from_minor",
    "minor_units",
    "round_to_minor",
    "to_minor_exact",
]

Rounding = Literal["half-even", "half-up"]

# ISO 4217 minor units of the currencies formarket knows. A listing priced in a currency not
# listed here is not rated (its usage is reported as unrated) rather than rounded by guesswork.
MINOR_UNITS: Mapping[str, int] = {
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "INR": 2,
    "ISK": 0,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "SEK": 2,
    "SGD": 2,
    "USD": 2,
    "ZAR": 2,
}


def minor_units(currency: str) -> int:
    """Digits after the decimal point of the currency's minor unit."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise InputError(
            f"currency {currency} has no known minor unit",
            hint="formarket rates only currencies in formarket.royalties.money.MINOR_UNITS",
        ) from None


def round_to_minor(value: Fraction, currency: str, rounding: Rounding) -> int:
    """An exact amount in major units, rounded once to a whole number of minor units."""
    factor: int = 10 ** minor_units(currency)
    scaled = value * factor
    floor: int = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2):
        return floor + 1
    if rest < Fraction(1, 2):
        return floor
    if rounding == "half-up":
        # Half away from zero, as invoices usually round.
        return floor + 1 if value >= 0 else floor
    return floor if floor % 2 == 0 else floor + 1


def to_minor_exact(value: Decimal, currency: str) -> int:
    """An amount that must already be a whole number of minor units (a threshold, a fee)."""
    scaled = value.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise InputError(
            f"{value} {currency} is finer than the currency's minor unit",
            hint=f"{currency} has {minor_units(currency)} decimal places",
        )
    return int(scaled)


def from_minor(units: int, currency: str) -> Decimal:
    """Minor units as a Decimal in major units, with exactly the currency's decimals."""
    return Decimal(units).scaleb(-minor_units(currency))


def allocate(total: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Split `total` minor units in proportion to `weights` by the largest-remainder method.

    The parts always sum to `total`; each is within one unit of its exact pro-rata value; a
    unit left over goes to the largest remainder, ties to the first name in sorted order, so
    the result does not depend on the order the weights are given in.
    """
    if not weights:
        raise ValueError("nothing to allocate to")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    whole = sum(weights.values(), Fraction(0))
    if whole == 0:
        raise ValueError("weights must not all be zero")
    if total < 0:
        return {name: -part for name, part in allocate(-total, weights).items()}
    names = sorted(weights)
    exact = {name: total * weights[name] / whole for name in names}
    parts = {name: exact[name].numerator // exact[name].denominator for name in names}
    left = total - sum(parts.values())
    by_remainder = sorted(names, key=lambda n: (-(exact[n] - parts[n]), n))
    for name in by_remainder[:left]:
        parts[name] += 1
    return parts


def allocate_counts(total: int, counts: Mapping[str, int]) -> dict[str, int]:
    """`allocate` with whole-number weights (quantities), in integer arithmetic: the same
    parts, for splitting a line among thousands of accounts without a Fraction each."""
    if not counts:
        raise ValueError("nothing to allocate to")
    if any(c < 0 for c in counts.values()):
        raise ValueError("weights must not be negative")
    whole = sum(counts.values())
    if whole == 0:
        raise ValueError("weights must not all be zero")
    if total < 0:
        return {name: -part for name, part in allocate_counts(-total, counts).items()}
    names = sorted(counts)
    parts: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for name in names:
        parts[name], remainders[name] = divmod(total * counts[name], whole)
    left = total - sum(parts.values())
    if left:
        # The largest remainders, ties to the first name: a stable sort of names in order.
        for name in sorted(names, key=remainders.__getitem__, reverse=True)[:left]:
            parts[name] += 1
    return parts
