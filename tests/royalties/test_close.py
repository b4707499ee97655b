"""The close on small, hand-made usage: rating, splitting, ledger, statements."""

from __future__ import annotations

import json
from decimal import Decimal

from formarket.royalties.ledger import balances, payable
from formarket.schemas.usage import UsageEvent
from tests.royalties.helpers import (
    Offer,
    call,
    close,
    gz,
    hours,
    line,
    listed,
    money_files,
    usage_file,
)

CHAT = Offer(
    "model",
    "acme/chat",
    "1.0.0",
    {
        "model": "per_token",
        "currency": "USD",
        "input_per_million": "0.20",
        "output_per_million": "0.60",
    },
    "70",
)
CODER = Offer(
    "model",
    "acme/coder",
    "2.0.0",
    {"model": "per_instance_hour", "currency": "USD", "per_hour": "4.80"},
    "60",
)
BOT = Offer(
    "agent",
    "zeta/helper",
    "0.1.0",
    {"model": "per_request", "currency": "EUR", "per_request": "0.05"},
    "85",
)
FREE = Offer("model", "zeta/free", "1.0.0", {"model": "free"}, "0")
SUB = Offer(
    "agent",
    "zeta/sub",
    "1.0.0",
    {"model": "subscription", "currency": "EUR", "tiers": [{"name": "Basic", "monthly": "9"}]},
    "70",
)
LISTINGS = listed([CHAT, CODER, BOT, FREE, SUB])


def test_tokens_are_priced_per_million_and_rounded_once_per_line() -> None:
    events = [
        call(f"e{i}", model=("acme/chat", "1.0.0"), input_tokens=1_000_001, output_tokens=333)
        for i in range(3)
    ]
    _, files = close({usage_file("2026-03-10"): gz(line(e) for e in events)}, LISTINGS)
    statement = json.loads(files["statements/acme.json"])
    lines = {ln["metric"]: ln for ln in statement["currencies"][0]["lines"]}
    # 3,000,003 input tokens x 0.20 / 1e6 = 0.6000006 -> 0.60; 999 x 0.60 / 1e6 -> 0.00
    assert lines["input_tokens"]["quantity"] == 3_000_003
    assert lines["input_tokens"]["gross"] == "0.60"
    assert lines["input_tokens"]["creator"] == "0.42"
    assert lines["input_tokens"]["platform"] == "0.18"
    assert lines["output_tokens"]["gross"] == "0.00"


def test_instance_hours_agent_requests_and_unrated_usage() -> None:
    events = [
        hours("h1", model=("acme/coder", "2.0.0"), seconds=3600, time="2026-03-01T01:00:00Z"),
        hours("h2", model=("acme/coder", "2.0.0"), seconds=1800, time="2026-03-01T02:00:00Z"),
    ]
    calls = [
        call("c1", agent=("zeta/helper", "0.1.0"), model=("zeta/free", "1.0.0")),
        call("c2", agent=("zeta/sub", "1.0.0"), model=("acme/chat", "1.0.0")),
        call("c3", agent=("zeta/helper", "0.1.0"), outcome="error"),
        call("c4", model=("zeta/free", "1.0.0")),  # the model call c1 made
    ]
    files = {
        usage_file("2026-03-01", "farm/meter-1"): gz(line(e) for e in events),
        usage_file("2026-03-10"): gz(line(e) for e in calls),
    }
    closing, rendered = close(files, LISTINGS)
    acme = json.loads(rendered["statements/acme.json"])
    hourly = [ln for ln in acme["currencies"][0]["lines"] if ln["metric"] == "instance_seconds"]
    assert hourly[0]["quantity"] == 5400
    assert hourly[0]["gross"] == "7.20"  # 1.5 h x 4.80
    zeta = json.loads(rendered["statements/zeta.json"])
    eur = zeta["currencies"][0]
    assert eur["currency"] == "EUR"
    assert [ln["quantity"] for ln in eur["lines"]] == [1]  # the failed call is not charged
    assert {u["pricing"] for u in zeta["unrated"]} == {"free", "subscription"}
    assert closing.summary.counts.not_charged == 1


def test_an_agents_calls_credit_the_agent_and_the_model_only_its_own_calls() -> None:
    # The agent's events name the model it runs with; the model is credited by the events of
    # the calls it served (the agent's model calls, through the gateway), never by the agent's.
    agent_calls = [
        call(f"a{i}", agent=("zeta/helper", "0.1.0"), model=("acme/chat", "1.0.0"),
             input_tokens=5_000_000, output_tokens=500_000)
        for i in range(4)
    ]  # fmt: skip
    model_calls = [
        call(f"m{i}", model=("acme/chat", "1.0.0"), input_tokens=1_000_000, output_tokens=0)
        for i in range(2)
    ]
    files = {usage_file("2026-03-10"): gz(line(e) for e in [*agent_calls, *model_calls])}
    _, rendered = close(files, LISTINGS)
    acme = json.loads(rendered["statements/acme.json"])
    chat = {ln["metric"]: ln for ln in acme["currencies"][0]["lines"]}
    assert chat["input_tokens"]["quantity"] == 2_000_000  # the two model calls alone
    assert chat["input_tokens"]["gross"] == "0.40"
    assert "output_tokens" not in chat or chat["output_tokens"]["quantity"] == 0
    zeta = json.loads(rendered["statements/zeta.json"])
    helper = zeta["currencies"][0]["lines"]
    assert [(ln["listing"], ln["metric"], ln["quantity"]) for ln in helper] == [
        ("zeta/helper", "requests", 4)
    ]


def test_a_model_that_served_no_call_is_credited_nothing() -> None:
    # Every call answered by the agent alone: no model events, so no line for the model.
    agent_calls = [
        call(f"a{i}", agent=("zeta/helper", "0.1.0"), model=("acme/chat", "1.0.0"))
        for i in range(3)
    ]
    files = {usage_file("2026-03-10"): gz(line(e) for e in agent_calls)}
    closing, rendered = close(files, LISTINGS)
    assert "statements/acme.json" not in rendered or not any(
        cur["lines"] for cur in json.loads(rendered["statements/acme.json"])["currencies"]
    )
    assert [s.publisher for s in closing.statements if s.currencies] == ["zeta"]


def test_ledger_balances_and_statement_totals() -> None:
    events = [
        call(f"e{i}", model=("acme/chat", "1.0.0"), input_tokens=10**6 * i) for i in range(1, 40)
    ]
    closing, _ = close({usage_file("2026-03-10"): gz(line(e) for e in events)}, LISTINGS)
    for transaction in closing.ledger:
        assert sum(e.amount for e in transaction.entries) == 0
    owed = -balances(closing.ledger)[(payable("acme"), "USD")]
    statement = next(s for s in closing.statements if s.publisher == "acme")
    assert owed == statement.currencies[0].creator
    block = statement.currencies[0]
    assert block.gross == sum((ln.gross for ln in block.lines), Decimal(0))
    assert closing.payouts.lines[0].status == "nothing-due"  # held for one period


def test_a_close_depends_on_the_events_not_on_how_they_were_written() -> None:
    events = [
        UsageEvent.model_validate(call(f"e{i}", model=("acme/chat", "1.0.0"), input_tokens=10**6))
        for i in range(5)
    ]
    lines = [event.model_dump_json().encode() for event in events]
    one_file = {usage_file("2026-03-10"): gz(lines)}
    reversed_files = {
        usage_file("2026-03-10", seq=n): gz([written]) for n, written in enumerate(lines[::-1], 1)
    }
    first, a = close(one_file, LISTINGS)
    again, b = close(reversed_files, LISTINGS)
    assert money_files(a) == money_files(b)
    assert first.summary.totals == again.summary.totals
    (statement,) = (s for s in first.statements if s.publisher == "acme")
    assert statement.currencies[0].gross == Decimal("1.00")  # 5 M input tokens x 0.20
