"""What the two readers of deflated bytes share: git's loose objects
(`formarket.market.trees`) and gzip usage files (`formarket.usage.files`), both inflated by
ISA-L into a buffer of the size they announce."""

from __future__ import annotations

from typing import cast

from isal import isal_zlib

__all__ = ["INFLATE_ERROR", "MOST_EXPANSION"]

# isal's stub declares its error as an instance; it is the exception class.
INFLATE_ERROR = cast(type[Exception], isal_zlib.error)
# Deflate cannot expand its input more than about 1,032 times: a larger announced size is a
# lie, and is not allocated.
MOST_EXPANSION = 1032
