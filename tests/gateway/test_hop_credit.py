"""The agent-to-model hop draws on the calling account's credit, on SQLite and PostgreSQL: an
agent deployment calls its model through the gateway with the key the farm makes for it (an
operator's key named for the deployment's account by pseudonym, scoped to the model's
deployment), and that call holds and settles credit of the account the agent's deployment
bills, at the model's prices; an account that cannot pay has the hop refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from formarket.accounts import AccountStore, AccountView, open_database
from formarket.accounts.credit import CreditStore
from formarket.accounts.pseudonym import load_pseudonyms
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from tests.accounts.databases import db_url, pg_url
from tests.gateway.conftest import AGENT, MODEL
from tests.gateway.helpers import Client, Reply

__all__ = ["db_url", "pg_url"]

AGENT_CALL = Decimal("0.10")  # what one call of the agent costs
IN, OUT = Decimal("0.0001"), Decimal("0.0002")  # the model's prices per token

Scope = MutableMapping[str, Any]


@dataclass
class Agent:
    """An agent deployment: each question goes to its model through the gateway, with the
    farm's key and the call it serves as the parent, as an agent's VM does."""

    key: str = ""
    gateway: str = ""
    hops: list[Reply] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = dict(scope["headers"])
        parent = headers.get(b"x-formarket-call", b"").decode()
        question = json.loads(body)["messages"][-1]["content"]
        hop = await asyncio.to_thread(
            Client(self.gateway, self.key).request,
            "POST",
            "/v1/chat/completions",
            {
                "model": "dep-model",
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 8,
            },
            headers={"X-Formarket-Parent": parent},
        )
        self.hops.append(hop)
        if hop.status != 200:
            status, answer = 502, hop.body
        else:
            text = hop.json()["choices"][0]["message"]["content"]
            status = 200
            answer = json.dumps(
                {
                    "id": "agent-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "agent",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"it says: {text}"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


@dataclass
class Hop:
    agent: Agent
    client: Client
    credit: CreditStore
    account: AccountView


@contextlib.contextmanager
def _hop(tmp_path: Path, upstream: str, db_url: str, engine: Engine) -> Iterator[Hop]:
    """alice's agent deployment and its model's, behind a gateway on the accounts database
    (stopped at the end, so that its leases are given back); the agent calls its model with
    the key the farm makes for it (as formarket.farm.agentkeys.agent_key does)."""
    state = StatePaths(tmp_path / "gw")
    state.root.mkdir(parents=True)
    # Git, routes and the farm's key name alice only by her pseudonym.
    alice_in_git = load_pseudonyms(state.root).of("alice")
    accounts = AccountStore(engine)
    alice = accounts.sign_in("alice", 1)
    key, _ = accounts.create_key(alice)
    agent = Agent()
    agent.key, _ = create_key(state.keys, alice_in_git, scope=("dep-model",))
    with ServerThread(agent) as agent_server:
        save_routes(
            state.routes,
            [
                Route(
                    deployment="dep-agent",
                    endpoint=agent_server.url,
                    account=alice_in_git,
                    agent=AGENT,
                    model=MODEL,
                    request_price=AGENT_CALL,
                ),
                Route(
                    deployment="dep-model",
                    endpoint=upstream,
                    account=alice_in_git,
                    model=MODEL,
                    input_price=IN,
                    output_price=OUT,
                ),
            ],
        )
        config = GatewayConfig(state, source="gateway/hop", database_url=db_url)
        with ServerThread(build_gateway(config)) as gateway:
            agent.gateway = gateway.url
            yield Hop(agent, Client(gateway.url, key), CreditStore(engine), alice)


def test_the_balance_loses_the_agent_call_and_the_hop(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    with _hop(tmp_path, upstream, db_url, engine) as hop:
        hop.credit.grant(hop.account, Decimal("1.00"))
        replies = [hop.client.chat("dep-agent", f"question {n}") for n in range(3)]
    assert [r.status for r in replies] == [200] * 3
    for model_call in hop.agent.hops:
        assert model_call.status == 200
        usage = model_call.json()["usage"]
        # The model's own call, at the model's prices.
        assert Decimal(usage["cost"]) == (
            usage["prompt_tokens"] * IN + usage["completion_tokens"] * OUT
        )
    agent_costs = sum(Decimal(r.json()["usage"]["cost"]) for r in replies)
    hop_costs = sum(Decimal(h.json()["usage"]["cost"]) for h in hop.agent.hops)
    assert agent_costs == 3 * AGENT_CALL
    assert hop_costs > 0
    view = hop.credit.balance(hop.account)
    assert view.spent == agent_costs + hop_costs
    assert view.balance == Decimal("1.00") - agent_costs - hop_costs


def test_an_account_that_cannot_pay_has_the_hop_refused(
    tmp_path: Path, upstream: str, db_url: str, engine: Engine
) -> None:
    with _hop(tmp_path, upstream, db_url, engine) as hop:
        # Enough for the agent's own call, nothing left for its model's.
        hop.credit.grant(hop.account, AGENT_CALL)
        reply = hop.client.chat("dep-agent", "what is formarket?")
    (model_call,) = hop.agent.hops
    assert model_call.status == 429
    error = model_call.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert reply.status == 502  # the agent could not answer, and its call is not charged
    assert hop.credit.balance(hop.account).balance == AGENT_CALL


def test_a_hop_key_of_an_account_the_database_does_not_know_is_not_held(
    tmp_path: Path, upstream: str, db_url: str
) -> None:
    # An operator's deployment for someone who never signed in: no balance to draw on, and
    # its model calls go on as an operator's key's do.
    state = StatePaths(tmp_path / "gw")
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-model",
                endpoint=upstream,
                account="acme",
                model=MODEL,
                input_price=IN,
                output_price=OUT,
            )
        ],
    )
    key, _ = create_key(state.keys, "acme", scope=("dep-model",))
    config = GatewayConfig(state, source="gateway/hop", database_url=db_url)
    with ServerThread(build_gateway(config)) as gateway:
        assert Client(gateway.url, key).chat("dep-model", max_tokens=4).status == 200
