"""Known license identifiers: the SPDX License List, shipped as data."""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources

__all__ = ["license_hint"]


@cache
def _known() -> dict[str, str]:
    raw = resources.files("formarket").joinpath("data/spdx-licenses.json").read_text("utf-8")
    return {i.lower(): i for i in json.loads(raw)["ids"]}


def license_hint(license_id: str) -> str | None:
    """None when `license_id` is fine; otherwise what to write instead."""
    if license_id == "proprietary" or license_id.startswith("LicenseRef-"):
        return None
    known = _known()
    exact = known.get(license_id.lower())
    if exact == license_id:
        return None
    if exact is not None:
        return f"SPDX spells it {exact!r}"
    close = difflib.get_close_matches(license_id.lower(), list(known), n=1, cutoff=0.8)
    if close:
        return f"did you mean {known[close[0]]!r}?"
    return (
        "use an SPDX identifier (spdx.org/licenses), LicenseRef-<name> for a custom one,"
        " or `proprietary`"
    )
