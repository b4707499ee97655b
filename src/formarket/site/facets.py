"""The catalog's filters: which values of which facets each listing has.

Numeric facets (price, vCPUs, memory) are cut into fixed ranges so that a filter is a set of
listings known at build time, like any other value; prices are compared within one pricing model
only, since currencies are not converted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from formarket.site.catalog import Entry, price_value

__all__ = ["FACETS", "Facet", "FacetValue", "build_facets", "entry_facets"]

# (key, label, kinds it applies to, whether its values keep their defined order)
FACETS: tuple[tuple[str, str, frozenset[str], bool], ...] = (
    ("task", "Task", frozenset({"model"}), False),
    ("type", "Type", frozenset({"agent"}), False),
    ("framework", "Framework", frozenset({"agent"}), False),
    ("license", "License", frozenset({"model", "agent"}), False),
    ("pricing", "Pricing model", frozenset({"model", "agent"}), False),
    ("price", "Price range", frozenset({"model", "agent"}), True),
    ("vcpus", "vCPUs (minimum)", frozenset({"model", "agent"}), True),
    ("memory", "Memory (minimum)", frozenset({"model", "agent"}), True),
    ("gpu", "GPU", frozenset({"model", "agent"}), False),
    ("tags", "Tags", frozenset({"model", "agent", "solution"}), False),
)
MAX_VALUES = 60  # values offered per facet (the most frequent); keeps the page small

_PRICE_STEPS: Mapping[str, tuple[str, tuple[Decimal, ...]]] = {
    "per_request": ("per request", (Decimal("0.001"), Decimal("0.01"), Decimal("0.1"))),
    "per_token": ("per M input tokens", (Decimal("0.25"), Decimal(1), Decimal(5))),
    "per_instance_hour": ("per hour", (Decimal("0.5"), Decimal(2), Decimal(10))),
    "subscription": ("per month", (Decimal(10), Decimal(50), Decimal(200))),
}
_PRICE_ORDER = ("free", *_PRICE_STEPS)
_VCPUS = ((1, "1"), (2, "2"), (4, "3–4"), (8, "5–8"), (10**9, "more than 8"))
_MEMORY = (
    (1024, "up to 1 GiB"),
    (4096, "1–4 GiB"),
    (16384, "4–16 GiB"),
    (65536, "16–64 GiB"),
    (10**12, "more than 64 GiB"),
)


@dataclass(frozen=True, slots=True)
class FacetValue:
    key: str
    label: str
    order: int  # position among the facet's values when they keep a defined order
    ordinals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Facet:
    key: str
    label: str
    values: tuple[FacetValue, ...]


def _num(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _price(pricing: Mapping[str, Any]) -> tuple[str, str, int]:
    model = str(pricing.get("model"))
    if model not in _PRICE_STEPS:
        return "free", "Free", 0
    unit, steps = _PRICE_STEPS[model]
    value = price_value(pricing)
    base = _PRICE_ORDER.index(model) * 10
    for i, step in enumerate(steps):
        if value < step:
            low = f"{_num(steps[i - 1])}–" if i else "under "
            return f"{model}-{i}", f"{low}{_num(step)} {unit}", base + i
    return f"{model}-{len(steps)}", f"{_num(steps[-1])} or more {unit}", base + len(steps)


def _bucket(value: int, steps: Sequence[tuple[int, str]]) -> tuple[str, str, int]:
    for i, (limit, label) in enumerate(steps):
        if value <= limit:
            return str(i), label, i
    return str(len(steps) - 1), steps[-1][1], len(steps) - 1  # pragma: no cover


def entry_facets(entry: Entry) -> Iterator[tuple[str, str, str, int]]:
    """(facet, value key, value label, value order) for each facet value of a listing."""
    data = entry.data
    kind = entry.kind
    if kind == "model" and data.get("task"):
        yield "task", str(data["task"]), str(data["task"]), 0
    if kind == "agent":
        for facet, field in (("type", "agent_type"), ("framework", "framework")):
            if data.get(field):
                yield facet, str(data[field]), str(data[field]), 0
    if kind in ("model", "agent"):
        if data.get("license"):
            yield "license", str(data["license"]), str(data["license"]), 0
        pricing = data.get("pricing") or {}
        model = str(pricing.get("model", "free"))
        yield "pricing", model, model.replace("_", " "), 0
        yield ("price", *_price(pricing))
        minimum = (data.get("resources") or {}).get("minimum") or {}
        yield ("vcpus", *_bucket(int(minimum.get("vcpus", 1)), _VCPUS))
        yield ("memory", *_bucket(int(minimum.get("memory_mib", 0)), _MEMORY))
        gpu = minimum.get("gpu") or ((data.get("resources") or {}).get("recommended") or {}).get(
            "gpu"
        )
        if gpu:
            yield "gpu", str(gpu.get("model")), str(gpu.get("model")), 1
        else:
            yield "gpu", "none", "no GPU", 0
    for tag in data.get("tags") or ():
        yield "tags", str(tag), str(tag), 0


def build_facets(kind: str, entries: Sequence[tuple[int, Entry]]) -> list[Facet]:
    """The facets of one kind's catalog; `entries` are (ordinal, entry) in ordinal order."""
    found: dict[str, dict[str, tuple[str, int, list[int]]]] = {}
    for ordinal, entry in entries:
        for facet, key, label, order in entry_facets(entry):
            values = found.setdefault(facet, {})
            if key not in values:
                values[key] = (label, order, [])
            values[key][2].append(ordinal)
    out = []
    for key, label, kinds, ordered in FACETS:
        if kind not in kinds or key not in found:
            continue
        listed = [
            FacetValue(value, text, order, tuple(ordinals))
            for value, (text, order, ordinals) in found[key].items()
        ]
        if ordered:
            listed.sort(key=lambda v: (v.order, v.key))
        else:
            listed.sort(key=lambda v: (-len(v.ordinals), v.label.lower(), v.key))
        out.append(Facet(key, label, tuple(listed[:MAX_VALUES])))
    return out
