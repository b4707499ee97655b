"""The values a request is written with, parsed strictly; shared by the CLI and issue forms.

Every value is text that came from a person: it is matched against a pattern or read with a
safe loader, never evaluated, and refused with a sentence that says what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, get_args

from formarket.errors import InputError
from formarket.schemas._types import LISTING_ID_PATTERN, SEMVER_PATTERN
from formarket.schemas.deployment import (
    SECRET_NAME_PATTERN,
    SECRET_REF_PATTERN,
    GpuRequest,
    RequestedListing,
    SecretRef,
)
from formarket.schemas.farm import GpuModel

__all__ = [
    "Resources",
    "parse_duration",
    "parse_gpu",
    "parse_listing",
    "parse_resources",
    "parse_secret",
    "parse_set",
    "quote",
]

_LISTING = re.compile(LISTING_ID_PATTERN)
_SEMVER = re.compile(SEMVER_PATTERN)
_SETTING_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_GPU = re.compile(r"^([A-Za-z0-9]{1,16}):([0-9]{1,2})$|^([A-Za-z0-9]{1,16})$")
_COUNT = re.compile(r"^[0-9]{1,7}$")
_DURATION = re.compile(
    r"^(?:([0-9]{1,3})d)?(?:([0-9]{1,4})h)?(?:([0-9]{1,5})m)?(?:([0-9]{1,7})s?)?$"
)
_UNITS = (86400, 3600, 60, 1)
GPU_MODELS: tuple[str, ...] = get_args(GpuModel)


def quote(text: str, limit: int = 60) -> str:
    """`text` made safe to show inside Markdown inline code: one line, no backticks, short."""
    flat = " ".join(text.replace("`", "'").split())
    return f"`{flat[:limit]}…`" if len(flat) > limit else f"`{flat}`"


def parse_duration(text: str) -> int:
    """Seconds from `15m`, `1h30m`, `2d`, `90s` or `90`."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None or not any(found.groups()):
        raise InputError(
            f"{quote(text)} is not a duration",
            hint="write it in days, hours, minutes and seconds, such as 15m, 1h30m or 90s",
        )
    return sum(int(part or 0) * unit for part, unit in zip(found.groups(), _UNITS, strict=True))


def parse_listing(text: str, what: str = "listing") -> RequestedListing:
    """`publisher/slug` or `publisher/slug@version`."""
    ident, at, version = text.strip().partition("@")
    if not _LISTING.fullmatch(ident) or (at and not _SEMVER.fullmatch(version)):
        raise InputError(
            f"{what} {quote(text)} is not a listing id",
            hint="write publisher/slug, or publisher/slug@version (such as"
            " tinyforge/faq-bot@1.0.0)",
        )
    return RequestedListing(id=ident, version=version or None)


def parse_gpu(text: str) -> GpuRequest:
    """`MODEL:COUNT` or `MODEL` (one GPU)."""
    match = _GPU.fullmatch(text.strip())
    model = (match[1] or match[3]) if match else None
    if match is None or model not in GPU_MODELS:
        raise InputError(
            f"GPU {quote(text)} is not MODEL:COUNT",
            hint=f"such as H100:1; the models are {', '.join(GPU_MODELS)}",
        )
    count = int(match[2]) if match[2] else 1
    if not 1 <= count <= 8:
        raise InputError(f"GPU count {count} is not between 1 and 8")
    return GpuRequest.model_validate({"model": model, "count": count})


class Resources:
    """vCPUs, memory (MiB) and GPUs, any of them left to the listing's recommendation."""

    __slots__ = ("gpu", "memory_mib", "vcpus")

    def __init__(
        self, vcpus: int | None = None, memory_mib: int | None = None, gpu: GpuRequest | None = None
    ) -> None:
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.gpu = gpu


def _count(key: str, value: str, low: int, high: int) -> int:
    if not _COUNT.fullmatch(value) or not low <= int(value) <= high:
        raise InputError(
            f"{key}={quote(value)} is not a whole number from {low} to {high}",
            hint="such as vcpus=2 memory=1024 gpu=H100:1",
        )
    return int(value)


def parse_resources(text: str) -> Resources:
    """`vcpus=2 memory=1024 gpu=H100:1`, separated by spaces or commas, each at most once."""
    seen: dict[str, str] = {}
    for token in text.replace(",", " ").split():
        key, eq, value = token.partition("=")
        if not eq or key not in ("vcpus", "memory", "gpu"):
            raise InputError(
                f"resources: {quote(token)} is not vcpus=N, memory=MiB or gpu=MODEL:COUNT",
                hint="such as vcpus=2 memory=1024 gpu=H100:1",
            )
        if key in seen:
            raise InputError(f"resources: {key} is given twice")
        seen[key] = value
    return Resources(
        _count("vcpus", seen["vcpus"], 1, 128) if "vcpus" in seen else None,
        _count("memory", seen["memory"], 128, 1048576) if "memory" in seen else None,
        parse_gpu(seen["gpu"]) if "gpu" in seen else None,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` settings: a value that reads as JSON (a number, true, a list...) is that,
    anything else is the string as written."""
    settings: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not _SETTING_KEY.fullmatch(key):
            raise InputError(
                f"--set {quote(item)} is not KEY=VALUE",
                hint="a key is letters, digits and underscores, such as --set min_match=0.5",
            )
        if key in settings:
            raise InputError(f"the setting {key} is given twice")
        try:
            value: Any = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            value = raw
        settings[key] = value
    return settings


def parse_secret(item: str) -> SecretRef:
    """`NAME=REF`, where REF says where the farm finds the value, never the value itself."""
    name, eq, ref = item.partition("=")
    if not eq or not re.fullmatch(SECRET_NAME_PATTERN, name):
        raise InputError(
            f"--secret {quote(item, 20)} is not NAME=REF",
            hint="NAME is an upper-case variable name, such as API_KEY=env:SUPPORT_API_KEY",
        )
    if not re.fullmatch(SECRET_REF_PATTERN, ref):
        # Never echo it: it may be the secret itself, given by mistake.
        raise InputError(
            f"the secret {name} is not given by reference",
            hint="secrets are references (env:NAME, file:/path or vault:path), never values",
        )
    return SecretRef(name=name, ref=ref)
