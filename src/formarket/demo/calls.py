"""The demo's gateway step: calls through the gateway over HTTP to the VMs the farm runs,
metered, and committed to git by the flusher as the bot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from formarket.errors import NotFoundError
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.flush import flush_all
from formarket.gateway.keys import create_key
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.show import render_text, usage_summary
from formarket.httpclient import Client
from formarket.market.repository import open_repository

__all__ = ["demo_calls"]

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


def demo_calls(
    repo_path: Path, deployments: list[tuple[str, str, str]], echo: Echo, *, calls: int = 20
) -> int:
    """Call running deployments through the gateway over HTTP, then commit the usage (the
    calls' events and the farm's instance-hours) as the bot. `deployments` holds (deployment
    id, account, what to ask); returns how many events were committed."""
    repo = open_repository(repo_path, search_up=False)
    paths = StatePaths(default_state_dir(repo_path))
    keys: dict[str, str] = {}
    for _dep, account, _ask in deployments:
        if account not in keys:
            keys[account], record = create_key(paths.keys, account)
            echo(f"formarket gateway keys create {account}  -> key {record.id} (stored hashed)")
    config = GatewayConfig(paths, source="gateway/demo")
    with ServerThread(build_gateway(config)) as gateway:
        echo(f"the gateway listens on {gateway.url}; it routes to what the farm publishes")
        for dep, account, ask in deployments:
            call = _client(gateway.url, keys[account])
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
    committed = 0
    for result in flush_all(repo, paths.spool):
        for path, count in result.files:
            committed += count
            echo(f"formarket usage flush -> {count} events committed to {path}")
    echo(render_text(usage_summary(repo, since=None)))
    return committed
