"""Simulated usage, until the gateway and the farm meter real usage: deterministic, seeded.

Deployments pair an agent with a model (or run a model alone); calls are spread over a month's
days with a few popular deployments taking most of them, and a few fail or are rejected; an
agent asks its model on most of its calls, and each model call is an event of its own; the
farm meters every deployment of a listing priced per instance-hour, hour by hour. Each gateway
flushes its events every `flush_events` calls into a new file, as the real one will, and now and
then sends an event a second time (the retry of an unacknowledged flush). The same plan always
gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo

from formarket.market.writer import Identity, commit_changes
from formarket.royalties.pricebook import PriceEntry
from formarket.schemas.pricing import PerInstanceHourPricing
from formarket.usage.files import month_index, pack_lines, usage_path

__all__ = ["Deployment", "Plan", "commit_usage", "deployments", "simulate", "simulate_day"]


@dataclass(frozen=True, slots=True)
class Plan:
    period: str
    calls: int
    seed: int = 7
    gateways: tuple[str, ...] = ("gateway/gw-1", "gateway/gw-2")
    meter: str = "farm/meter-1"
    deployments: int = 12
    accounts: int = 50
    flush_events: int = 2000
    failed_percent: int = 3
    rejected_percent: int = 1
    resend_per_mille: int = 2
    days: tuple[int, ...] = ()  # days of the month; all when empty


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    agent: PriceEntry | None
    model: PriceEntry | None

    @property
    def hourly(self) -> bool:
        return any(
            isinstance(e.pricing, PerInstanceHourPricing)
            for e in (self.agent, self.model)
            if e is not None
        )


def deployments(offers: Sequence[PriceEntry], count: int, seed: int) -> list[Deployment]:
    """`count` deployments of the offered listing versions, every offer deployed at least once
    when there are enough."""
    rng = random.Random(seed)  # noqa: S311 - simulated usage, not secrets
    agents = [o for o in offers if o.kind == "agent"]
    models = [o for o in offers if o.kind == "model"]
    if not models and not agents:
        return []
    out = []
    for i in range(count):
        agent = model = None
        if agents and (i % 3 != 2 or not models):
            agent = agents[i % len(agents)] if i < len(agents) else rng.choice(agents)
        if models and (agent is None or rng.random() < 0.8):
            model = (
                models[i % len(models)] if agent is None and i < len(models) else rng.choice(models)
            )
        out.append(Deployment(f"dep-{seed % 1000:03d}-{i:05d}", agent, model))
    return out


def _ref(entry: PriceEntry | None) -> str:
    if entry is None:
        return "null"
    return f'{{"id":"{entry.listing}","version":"{entry.version}"}}'


def _time(day: date, second: int) -> str:
    hours, rest = divmod(second, 3600)
    return f"{day:%Y-%m-%d}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


def _days(plan: Plan) -> list[date]:
    month = month_index(plan.period)
    first = date(month // 12, month % 12 + 1, 1)
    nxt = month + 1
    length = (date(nxt // 12, nxt % 12 + 1, 1) - first).days
    wanted = plan.days or tuple(range(1, length + 1))
    return [first.replace(day=d) for d in wanted if 1 <= d <= length]


def simulate(offers: Sequence[PriceEntry], plan: Plan) -> dict[str, bytes]:
    """Usage files (path -> gzip bytes) for the plan's days."""
    fleet = deployments(offers, plan.deployments, plan.seed)
    days = _days(plan)
    files: dict[str, bytes] = {}
    for i, day in enumerate(days):
        share = plan.calls // len(days) + (1 if i < plan.calls % len(days) else 0)
        files.update(simulate_day(fleet, plan, day, share))
    return files


def simulate_day(
    fleet: Sequence[Deployment], plan: Plan, day: date, calls: int
) -> dict[str, bytes]:
    """One day of usage: `calls` gateway calls and the farm's hourly metering."""
    rng = random.Random(f"{plan.seed}/{day}")  # noqa: S311 - simulated usage, not secrets
    if not fleet:
        return {}
    # A few deployments take most calls, as a few listings do on any marketplace.
    weights = [1 / (rank + 1) for rank in range(len(fleet))]
    chosen = rng.choices(range(len(fleet)), weights, k=calls)
    asks = random.Random(f"{plan.seed}/{day}/model-calls")  # noqa: S311 - as above
    per_source: dict[str, list[tuple[int, bytes]]] = {g: [] for g in plan.gateways}
    counters = dict.fromkeys(plan.gateways, 0)
    for pick in chosen:
        deployment = fleet[pick]
        source = plan.gateways[rng.randrange(len(plan.gateways))]
        counters[source] += 1
        second = rng.randrange(86400)
        roll = rng.randrange(100)
        outcome = (
            "rejected"
            if roll < plan.rejected_percent
            else "error"
            if roll < plan.rejected_percent + plan.failed_percent
            else "ok"
        )
        rejected = outcome == "rejected"
        input_tokens = 0 if rejected else int(rng.paretovariate(1.6) * 120)
        output_tokens = 0 if outcome != "ok" else int(rng.paretovariate(2.0) * 60)
        input_tokens = min(input_tokens, 200_000)
        output_tokens = min(output_tokens, 32_000)
        duration = 0 if rejected else 40 + output_tokens * 12 + rng.randrange(200)
        name = source.split("/", 1)[1]
        line = (
            f'{{"specversion":"1.0","id":"{name}-{day:%Y%m%d}-{counters[source]:09d}",'
            f'"source":"{source}","type":"dev.formarket.usage.call","time":"{_time(day, second)}",'
            f'"subject":"{deployment.id}","datacontenttype":"application/json",'
            f'"data":{{"account":"acct-{rng.randrange(plan.accounts):05d}",'
            f'"agent":{_ref(deployment.agent)},"model":{_ref(deployment.model)},'
            f'"input_tokens":{input_tokens},"output_tokens":{output_tokens},"requests":1,'
            f'"duration_ms":{duration},"outcome":"{outcome}",'
            f'"tokens_source":"{"measured" if rng.randrange(20) == 0 else "upstream"}",'
            '"instance_seconds":0}}'
        ).encode()
        per_source[source].append((second, line))
        if deployment.agent is not None and deployment.model is not None and not rejected:
            # The agent asks its model on most calls, through the gateway: a call of its own,
            # the agent's call its parent. (A generator of its own keeps the draws above, and
            # so every other figure, as they were.)
            child = _child(asks, deployment, line, source, second, duration)
            if child is not None:
                per_source[source].append((second, child))
    meter: list[tuple[int, bytes]] = []
    for deployment in fleet:
        if not deployment.hourly:
            continue
        owner = _owner(deployment.id, plan.accounts)
        for hour in range(24):
            line = (
                f'{{"specversion":"1.0","id":"{deployment.id}-{day:%Y%m%d}-{hour:02d}",'
                f'"source":"{plan.meter}","type":"dev.formarket.usage.instance-hours",'
                f'"time":"{_time(day, hour * 3600 + 3599)}","subject":"{deployment.id}",'
                f'"datacontenttype":"application/json","data":{{"account":"acct-{owner:05d}",'
                f'"agent":{_ref(deployment.agent)},"model":{_ref(deployment.model)},'
                '"input_tokens":0,"output_tokens":0,"requests":0,"duration_ms":0,'
                '"outcome":"ok","tokens_source":"measured","instance_seconds":3600}}'
            ).encode()
            meter.append((hour * 3600 + 3599, line))
            if deployment.agent is not None and deployment.model is not None:
                # The model runs in a VM of its own, metered as its own deployment.
                model_line = (
                    line.replace(
                        f'"id":"{deployment.id}-'.encode(), f'"id":"{deployment.id}-model-'.encode()
                    )
                    .replace(
                        f'"subject":"{deployment.id}"'.encode(),
                        f'"subject":"{deployment.id}-model"'.encode(),
                    )
                    .replace(b'"agent":' + _ref(deployment.agent).encode(), b'"agent":null')
                )
                meter.append((hour * 3600 + 3599, model_line))
    per_source[plan.meter] = meter
    files: dict[str, bytes] = {}
    for source, events in per_source.items():
        events.sort(key=lambda e: e[0])
        lines = [line for _, line in events]
        flushes = [
            lines[i : i + plan.flush_events] for i in range(0, len(lines), plan.flush_events)
        ]
        resent: list[bytes] = []
        for k, flush in enumerate(flushes):
            body = resent + flush
            resent = [line for line in flush if rng.randrange(1000) < plan.resend_per_mille]
            # The last flush of a day is written just after midnight, into the next day.
            when = day + timedelta(days=1) if k == len(flushes) - 1 else day
            path = usage_path(when, source, day.day * 1_000_000 + k)
            files[path] = pack_lines(body)
    return files


def _child(
    rng: random.Random, deployment: Deployment, parent: bytes, source: str, second: int, ms: int
) -> bytes | None:
    """The model call an agent's call made, or None when the agent answered alone."""
    if rng.randrange(10) < 3:
        return None
    ident = parent.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
    account = parent.split(b'"account":"', 1)[1].split(b'"', 1)[0].decode()
    outcome = parent.split(b'"outcome":"', 1)[1].split(b'"', 1)[0].decode()
    input_tokens = int(rng.paretovariate(1.6) * 100)
    output_tokens = 0 if outcome != "ok" else int(rng.paretovariate(2.0) * 50)
    return (
        f'{{"specversion":"1.0","id":"{ident}.m","source":"{source}",'
        f'"type":"dev.formarket.usage.call","time":"{_time(_day_of(parent), second)}",'
        f'"subject":"{deployment.id}-model","datacontenttype":"application/json",'
        f'"data":{{"account":"{account}","agent":null,"model":{_ref(deployment.model)},'
        f'"input_tokens":{min(input_tokens, 200_000)},'
        f'"output_tokens":{min(output_tokens, 32_000)},"requests":1,'
        f'"duration_ms":{max(ms - 20, 0)},"outcome":"{outcome}","tokens_source":"measured",'
        '"instance_seconds":0}}'
    ).encode()


def _day_of(line: bytes) -> date:
    stamp = line.split(b'"time":"', 1)[1][:10].decode()
    return date.fromisoformat(stamp)


def _owner(deployment: str, accounts: int) -> int:
    """The account that owns a deployment, stable for the same id."""
    return sum(deployment.encode()) % max(accounts, 1)


def commit_usage(
    repo: BaseRepo, branch: str, files: dict[str, bytes], bot: Identity, message: str
) -> ObjectID:
    """Commit usage files as the bot, as the usage collectors will."""
    return commit_changes(repo, branch, dict(files), message, bot)
