"""The demo's gateway step: calls through the gateway over HTTP to the VMs the farm runs,
metered (an agent's calls to its model too, each an event of its own under its parent), and
committed to git by the flusher as the bot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formarket.errors import NotFoundError
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.flush import flush_all
from formarket.gateway.keys import create_key
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.show import render_text, usage_summary
from formarket.httpclient import Client
from formarket.market.repository import open_repository
from formarket.usage.spool import parse_segment, sealed_segments

__all__ = ["Hop", "demo_calls", "demo_gateway", "demo_usage"]

Echo = Callable[[str], None]


def _client(url: str, key: str) -> Callable[..., tuple[int, bytes]]:
    def call(
        method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token or key}", "Content-Type": "application/json"}
        content = json.dumps(body).encode() if body is not None else None
        with Client(url, timeout=30.0) as client:
            response = client.request(method, path, content=content, headers=headers)
        return response.status_code, response.content

    return call


def demo_gateway(repo_path: Path, database_url: str) -> ServerThread:
    """The gateway, before the farm starts: agents are given its address when they start.
    Accounts' keys are checked in `database_url`, the control plane's database."""
    config = GatewayConfig(
        StatePaths(default_state_dir(repo_path)),
        source="gateway/demo",
        database_url=database_url,
    )
    return ServerThread(build_gateway(config))


def demo_calls(
    repo_path: Path,
    gateway: str,
    deployments: list[tuple[str, str, str]],
    echo: Echo,
    *,
    calls: int = 20,
) -> None:
    """Call running deployments through the gateway at `gateway` over HTTP. `deployments`
    holds (deployment id, account, what to ask)."""
    paths = StatePaths(default_state_dir(repo_path))
    keys: dict[str, str] = {}
    for _dep, account, _ask in deployments:
        if account not in keys:
            keys[account], record = create_key(paths.keys, account)
            echo(f"formarket gateway keys create {account}  -> key {record.id} (stored hashed)")
    for dep, account, ask in deployments:
        call = _client(gateway, keys[account])
        status, body = call("GET", "/v1/models")
        listed = [m["id"] for m in json.loads(body)["data"]]
        echo(f"  {account}: GET /v1/models -> {status}: {', '.join(listed)}")
        answer = ""
        failed = 0
        for n in range(calls):
            message = {"role": "user", "content": ask if n == 0 else f"{ask} ({n})"}
            request = {"model": dep, "messages": [message]}
            for attempt in range(4):
                status, body = call("POST", "/v1/chat/completions", request)
                if status not in (502, 503, 504):
                    break
                # A VM under software emulation on a busy machine drops a connection now
                # and then; a client tries again, and the failed call is metered as such.
                failed += 1
                time.sleep(0.5 * (attempt + 1))
            if status != 200:
                raise NotFoundError(f"{dep} answered {status}: {body[:200]!r}")
            if n == 0:
                answer = json.loads(body)["choices"][0]["message"]["content"]
        retried = f", {failed} failed and tried again" if failed else ""
        echo(f"  {account} -> {dep}: {ask!r} -> {answer[:70]!r} ({calls} calls{retried})")


@dataclass(frozen=True, slots=True)
class Hop:
    """The agent-to-model hop as the gateway metered it."""

    agent_calls: int  # answered (outcome ok) calls of agents
    model_calls: int  # answered calls of models that name an agent's call as their parent
    answered_alone: int  # agent calls that made no model call (the FAQ answered)
    orphans: tuple[str, ...]  # model calls without a parent, or with one that is no agent call


def _hop(events: list[dict[str, Any]], direct: frozenset[str]) -> Hop:
    """The hop, from the events of every deployment but those in `direct` (models that
    users call themselves, whose calls have no parent)."""
    calls = [
        e for e in events if e["type"] == "dev.formarket.usage.call" and e["subject"] not in direct
    ]
    agents = {e["id"] for e in calls if e["data"]["agent"] and e["data"]["outcome"] == "ok"}
    models = [e for e in calls if e["data"]["agent"] is None and e["data"]["outcome"] == "ok"]
    parents = {e["data"].get("parent") for e in models}
    orphans = tuple(e["id"] for e in models if e["data"].get("parent") not in agents)
    return Hop(
        agent_calls=len(agents),
        model_calls=len(models) - len(orphans),
        answered_alone=len(agents - parents),
        orphans=orphans,
    )


def _spooled(spool: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for segment in sealed_segments(spool):
        events.extend(json.loads(line) for _, line in parse_segment(segment.read_bytes()).events)
    return events


def demo_usage(repo_path: Path, echo: Echo, direct: frozenset[str]) -> tuple[int, Hop]:
    """Show how the agents' calls to their models were metered, then commit the usage (the
    calls' events and the farm's instance-hours) as the bot; how many events were committed,
    and the hop. `direct`: the deployments of models that a user called alone."""
    paths = StatePaths(default_state_dir(repo_path))
    hop = _hop(_spooled(paths.spool), direct)
    if hop.orphans or not hop.model_calls:
        raise NotFoundError(
            f"the agents' model calls were not metered under their parents: {hop}",
            hint="each model call must carry the X-Formarket-Parent of the agent's call",
        )
    echo(
        f"  the agents answered {hop.agent_calls} calls; they asked their models"
        f" {hop.model_calls} times, each model call an event of its own naming the agent's"
        f" call as its parent; {hop.answered_alone} were answered from the FAQ, with no"
        " model call"
    )
    repo = open_repository(repo_path, search_up=False)
    committed = 0
    for result in flush_all(repo, paths.spool):
        for path, count in result.files:
            committed += count
            echo(f"formarket usage flush -> {count} events committed to {path}")
    echo(render_text(usage_summary(repo, since=None)))
    return committed, hop
