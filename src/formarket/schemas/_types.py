"""Constrained scalar types shared by every document.

Each type carries its JSON Schema with it, so the exported contract says exactly what the
models accept.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

__all__ = [
    "SEMVER_PATTERN",
    "Amount",
    "CurrencyCode",
    "GitHubLogin",
    "HttpUrl",
    "LicenseId",
    "ListingId",
    "Percent",
    "PublisherName",
    "RelativePath",
    "SemVer",
    "Sha256",
    "Slug",
    "Tag",
]

_NAME = r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?"
PUBLISHER_PATTERN = rf"^{_NAME}$"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
LISTING_ID_PATTERN = rf"^{_NAME}/[a-z0-9](?:[a-z0-9._-]{{0,62}}[a-z0-9])?$"
# semver.org's own regular expression, anchored, without build metadata: `1.0.0+x` is the
# same version as `1.0.0` by semver's precedence, so allowing it would let one published
# version come back with other content under a name that merely looks new.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
_AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,8})?$"
_PERCENT_PATTERN = r"^(100(\.0{1,4})?|[1-9]?[0-9](\.[0-9]{1,4})?)$"

PublisherName = Annotated[
    str,
    StringConstraints(pattern=PUBLISHER_PATTERN),
    Field(description="A publisher: lower-case letters, digits and inner hyphens, 1-40 long."),
]
Slug = Annotated[
    str,
    StringConstraints(pattern=SLUG_PATTERN),
    Field(description="A listing's name within its publisher."),
]
ListingId = Annotated[
    str,
    StringConstraints(pattern=LISTING_ID_PATTERN),
    Field(description="`<publisher>/<slug>`; must match the listing's folder."),
]
SemVer = Annotated[
    str,
    StringConstraints(pattern=SEMVER_PATTERN, max_length=128),
    Field(
        description="A semantic version (semver.org), such as 1.4.0 or 2.0.0-rc.1:"
        " MAJOR.MINOR.PATCH with an optional pre-release, never build metadata (`+...`)."
    ),
]
Sha256 = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="A SHA-256 digest as 64 lower-case hex digits."),
]
HttpUrl = Annotated[
    str,
    StringConstraints(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2048),
    Field(description="An http(s) URL."),
]
CurrencyCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="An ISO 4217 currency code, such as USD or EUR."),
]
LicenseId = Annotated[
    str,
    StringConstraints(pattern=r"^([A-Za-z0-9][A-Za-z0-9.+-]{0,63}|proprietary)$"),
    Field(description="An SPDX license identifier (Apache-2.0, MIT, ...) or `proprietary`."),
]
Tag = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$"),
    Field(description="A lower-case tag: letters, digits, inner hyphens."),
]
GitHubLogin = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?(\[bot\])?$"),
    Field(description="A GitHub login."),
]


def _relative_path(value: str) -> str:
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
        raise ValueError("must be a relative path inside the listing's folder, without . or ..")
    return value


RelativePath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$"),
    AfterValidator(_relative_path),
    Field(description="A path relative to the listing's folder, which it may not leave."),
]


def _exact_decimal(pattern: str) -> Any:
    """Accept a string or an integer, never a float: money must not pass through binary."""
    compiled = re.compile(pattern)

    def convert(value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number written as a string, such as '0.25'")
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, float):
            raise ValueError(
                "must be written as a quoted string (such as '0.25') so that no binary "
                "rounding can creep in"
            )
        if isinstance(value, Decimal):
            return value
        if not isinstance(value, str) or not compiled.match(value):
            raise ValueError(f"must be a decimal number matching {pattern}")
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already rules it out
            raise ValueError("not a decimal number") from exc

    return BeforeValidator(convert)


Amount = Annotated[
    Decimal,
    _exact_decimal(_AMOUNT_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _AMOUNT_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A non-negative amount of money in major units, as a string such as"
            " '0.25' (at most 8 decimals), or a whole number.",
        }
    ),
]
Percent = Annotated[
    Decimal,
    _exact_decimal(_PERCENT_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _PERCENT_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": 100},
            ],
            "description": "A percentage from 0 to 100, as a string such as '70' or '12.5',"
            " or a whole number.",
        }
    ),
]
