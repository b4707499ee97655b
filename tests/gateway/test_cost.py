"""Each answer tells its caller what the call cost, as a decimal string with its currency,
and which event is its receipt; streams tell it in their final usage chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from formarket.gateway.app import format_amount
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client
from tests.gateway.test_http import spooled

IN, OUT = Decimal("0.0000015"), Decimal("0.000002")
PER_CALL = Decimal("0.002")


@pytest.fixture
def priced(state: StatePaths, upstream: str) -> Iterator[Client]:
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-p",
                endpoint=upstream,
                account="acme",
                model=MODEL,
                input_price=IN,
                output_price=OUT,
            ),
            Route(deployment="dep-free", endpoint=upstream, account="acme", model=MODEL),
            Route(
                deployment="dep-call",
                endpoint=upstream,
                account="acme",
                model=MODEL,
                request_price=PER_CALL,
            ),
        ],
    )
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as server:
        yield Client(server.url, key)


def _priced(event: dict[str, object]) -> Decimal:
    data = event["data"]
    assert isinstance(data, dict)
    return data["input_tokens"] * IN + data["output_tokens"] * OUT


def test_a_call_shows_its_cost_and_its_receipt(priced: Client, state: StatePaths) -> None:
    reply = priced.chat("dep-p", "hello there", max_tokens=8)
    assert reply.status == 200
    usage = reply.json()["usage"]
    receipt = reply.headers["x-formarket-call"]
    event = spooled(state)[receipt]
    assert usage["currency"] == "USD"
    assert isinstance(usage["cost"], str)
    assert Decimal(usage["cost"]) == _priced(event) > 0
    assert usage["prompt_tokens"] == event["data"]["input_tokens"]


def test_a_free_call_costs_zero(priced: Client) -> None:
    usage = priced.chat("dep-free", "hi").json()["usage"]
    assert (usage["cost"], usage["currency"]) == ("0", "USD")


def test_a_call_priced_per_request_costs_its_price_whatever_its_tokens(priced: Client) -> None:
    for text in ("hi", "a much longer question than the first one, " * 5):
        usage = priced.chat("dep-call", text, max_tokens=4).json()["usage"]
        assert Decimal(usage["cost"]) == PER_CALL


def test_a_stream_shows_its_cost_in_its_final_usage_chunk(
    priced: Client, state: StatePaths
) -> None:
    reply = priced.chat(
        "dep-p", "stream me", stream=True, max_tokens=6, stream_options={"include_usage": True}
    )
    assert reply.status == 200
    chunks = [
        json.loads(line[6:])
        for line in reply.body.decode().splitlines()
        if line.startswith("data: {")
    ]
    usage = chunks[-1]["usage"]
    event = spooled(state)[reply.headers["x-formarket-call"]]
    assert Decimal(usage["cost"]) == _priced(event)
    assert usage["currency"] == "USD"


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("0E-12"), "0"),
        (Decimal("0.000021500000"), "0.0000215"),
        (Decimal("12.50"), "12.5"),
        (Decimal("3"), "3"),
        (Decimal("1E+2"), "100"),
    ],
)
def test_amounts_are_plain_decimal_text(amount: Decimal, shown: str) -> None:
    assert format_amount(amount) == shown
