"""Hypothesis strategies: price books of generated listings, and usage logs for them."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from tests.royalties.helpers import Offer
from tests.usage.helpers import call, gz, hours, line, usage_file

CURRENCIES = ("USD", "EUR", "GBP", "JPY")


def _amount(units: int, places: int) -> str:
    return format(Decimal(units).scaleb(-places), "f")


amounts = st.builds(_amount, st.integers(0, 10**7), st.integers(0, 8))
percents = st.integers(0, 100 * 10**4).map(lambda u: format(Decimal(u).scaleb(-4), "f"))


@st.composite
def pricings(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(CURRENCIES))
    kind = draw(
        st.sampled_from(
            ("per_token", "per_token", "per_request", "per_instance_hour", "free", "subscription")
        )
    )
    if kind == "per_token":
        return {
            "model": kind,
            "currency": currency,
            "input_per_million": draw(amounts),
            "output_per_million": draw(amounts),
        }
    if kind == "per_request":
        return {"model": kind, "currency": currency, "per_request": draw(amounts)}
    if kind == "per_instance_hour":
        return {"model": kind, "currency": currency, "per_hour": draw(amounts)}
    if kind == "free":
        return {"model": "free"}
    return {"model": kind, "currency": currency, "tiers": [{"name": "Basic", "monthly": "9"}]}


@st.composite
def offer_lists(draw: st.DrawFn, min_size: int = 1, max_size: int = 5) -> list[Offer]:
    size = draw(st.integers(min_size, max_size))
    out = []
    for i in range(size):
        kind = draw(st.sampled_from(("model", "agent")))
        publisher = draw(st.sampled_from(("acme", "zeta", "nova")))
        out.append(Offer(kind, f"{publisher}/item-{i}", "1.0.0", draw(pricings()), draw(percents)))
    return out


@st.composite
def usage(
    draw: st.DrawFn, offers: list[Offer], *, months: tuple[int, ...] = (3,), max_events: int = 30
) -> list[dict[str, Any]]:
    """Events with unique ids, served by the offers, dated in the given months of 2026."""
    count = draw(st.integers(1, max_events))
    models = [o for o in offers if o.kind == "model"]
    agents = [o for o in offers if o.kind == "agent"]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    events = []
    for i in range(count):
        month = rng.choice(months)
        day = rng.randint(1, 28)
        clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        time = f"2026-{month:02d}-{day:02d}T{clock}Z"
        model = rng.choice(models) if models and rng.random() < 0.8 else None
        agent = rng.choice(agents) if agents and (model is None or rng.random() < 0.5) else None
        if model is None and agent is None:
            if models:
                model = rng.choice(models)
            else:
                agent = rng.choice(agents)
        if rng.random() < 0.2 and model is not None:
            events.append(
                hours(
                    f"h-{i}",
                    model=(model.ident, model.version),
                    seconds=rng.randint(1, 3600),
                    time=time,
                )
            )
            continue
        events.append(
            call(
                f"c-{i}",
                model=(model.ident, model.version) if model else None,
                agent=(agent.ident, agent.version) if agent else None,
                time=time,
                source=rng.choice(("gateway/gw-1", "gateway/gw-2")),
                input_tokens=rng.choice((0, rng.randint(0, 5000), rng.randint(0, 10**7))),
                output_tokens=rng.randint(0, 4000),
                requests=rng.randint(0, 3),
                outcome=rng.choice(("ok", "ok", "ok", "error", "rejected")),
            )
        )
    return events


def files_of(
    events: list[dict[str, Any]], *, seed: int | None = None, pieces: int = 1
) -> dict[str, bytes]:
    """Usage files of the events, one per source and day; with a seed, the lines of each are
    shuffled and spread over `pieces` files of that source and day."""
    grouped: dict[tuple[str, str], list[bytes]] = {}
    for event in events:
        grouped.setdefault((event["source"], event["time"][:10]), []).append(line(event))
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for (source, day), lines in sorted(grouped.items()):
        if seed is not None:
            rng.shuffle(lines)
        parts: list[list[bytes]] = [[] for _ in range(pieces)]
        for item in lines:
            parts[rng.randrange(pieces) if seed is not None else 0].append(item)
        for seq, part in enumerate(parts, 1):
            if part:
                files[usage_file(day, source, seq)] = gz(part)
    return files
