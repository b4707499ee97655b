"""The demo's gateway step: calls through the gateway over HTTP, metered and committed.

A stand-in deployment (`standin`) takes the place of the farm's VM: a real server on loopback
that speaks OpenAI's API. The gateway routes a deployment of a listed agent and model to it,
takes a few calls from a client with a key, and the flusher commits their usage as the bot.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from pathlib import Path

from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.errors import NotFoundError
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.flush import flush_all
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.show import render_text, usage_summary
from formarket.httpclient import Client
from formarket.royalties import gitio
from formarket.schemas.usage import ListingVersion
from formarket.standins.openai import StandIn
from formarket.yamldoc import load_yaml

__all__ = ["demo_gateway"]

Echo = Callable[[str], None]
_DEPLOYMENT = "demo-chat"
_ACCOUNT = "demo-user"


def _listings(repo: Repo, kind: str) -> list[tuple[str, str, str]]:
    """(id, version, task) of the listings of a kind at main's tip."""
    tree = gitio.commit_tree(repo, repo.refs[Ref(b"refs/heads/main")])
    out = []
    for publisher, (is_dir, _) in sorted(gitio.list_dir(repo, tree, f"registry/{kind}").items()):
        if not is_dir:
            continue
        for slug in sorted(gitio.list_dir(repo, tree, f"registry/{kind}/{publisher}")):
            raw = gitio.read_path(repo, tree, f"registry/{kind}/{publisher}/{slug}/listing.yaml")
            if raw is None:
                continue
            data = load_yaml(raw, "listing.yaml").data
            if isinstance(data, dict) and "id" in data and "version" in data:
                out.append((str(data["id"]), str(data["version"]), str(data.get("task", ""))))
    return out


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


def demo_gateway(repo_path: Path, echo: Echo) -> None:
    repo = Repo(str(repo_path))
    models = _listings(repo, "models")
    agents = _listings(repo, "agents")
    if not models:
        raise NotFoundError("the registry lists no model to deploy")
    model = next((m for m in models if m[2] == "text-generation"), models[0])
    agent = agents[0] if agents else None
    paths = StatePaths(default_state_dir(repo_path))
    echo("a stand-in deployment (a small OpenAI-speaking server) takes the place of the VM")
    with ServerThread(StandIn()) as upstream:
        save_routes(
            paths.routes,
            [
                Route(
                    deployment=_DEPLOYMENT,
                    endpoint=upstream.url,
                    account=_ACCOUNT,
                    agent=ListingVersion(id=agent[0], version=agent[1]) if agent else None,
                    model=ListingVersion(id=model[0], version=model[1]),
                )
            ],
        )
        served = f"{agent[0]}@{agent[1]} on " if agent else ""
        echo(f"deployment {_DEPLOYMENT} ({served}{model[0]}@{model[1]}) runs at {upstream.url}")
        key, record = create_key(paths.keys, _ACCOUNT)
        echo(f"formarket gateway keys create {_ACCOUNT}  -> key {record.id} (stored hashed)")
        config = GatewayConfig(paths, source="gateway/demo")
        with ServerThread(build_gateway(config)) as gateway:
            echo(f"the gateway listens on {gateway.url}")
            call = _client(gateway.url, key)
            status, body = call("GET", "/v1/models")
            ids = [m["id"] for m in json.loads(body)["data"]]
            echo(f"  GET /v1/models -> {status}: {', '.join(ids)}")
            question = {"role": "user", "content": "What does formarket do with my calls?"}
            status, body = call(
                "POST", "/v1/chat/completions", {"model": _DEPLOYMENT, "messages": [question]}
            )
            answer = json.loads(body)
            echo(
                f"  POST /v1/chat/completions -> {status}: "
                f"{answer['choices'][0]['message']['content'][:60]!r}..., usage {answer['usage']}"
            )
            status, body = call(
                "POST",
                "/v1/chat/completions",
                {"model": model[0], "messages": [question], "stream": True, "max_tokens": 5},
            )
            events = body.count(b"data: ")
            echo(
                f"  POST /v1/chat/completions (stream, by listing id) -> {status}: {events} events"
            )
            status, body = call(
                "POST", "/v1/embeddings", {"model": _DEPLOYMENT, "input": ["royalties", "git"]}
            )
            echo(f"  POST /v1/embeddings -> {status}: {len(json.loads(body)['data'])} vectors")
            status, body = call("GET", "/v1/models", token="fmk_000000000000_" + "x" * 43)
            code = json.loads(body)["error"]["code"]
            echo(f"  GET /v1/models with a wrong key -> {status}: {code}")
    echo("the gateway stopped; its spool holds one event per call that reached the deployment")
    results = flush_all(repo, paths.spool)
    for result in results:
        for path, count in result.files:
            echo(f"formarket usage flush -> {count} events committed to {path}")
            echo(f"  commit {result.commit}, by the bot")
            tree = gitio.commit_tree(repo, ObjectID((result.commit or "").encode()))
            raw = gitio.read_path(repo, tree, path)
            first = gzip.decompress(raw or b"").split(b"\n", 1)[0].decode()
            echo(f"  its first line: {first}")
    echo(render_text(usage_summary(repo, since=None)))


def demo_calls(
    repo_path: Path, deployments: list[tuple[str, str, str]], echo: Echo, *, calls: int = 20
) -> int:
    """Call running deployments through the gateway over HTTP, then commit the usage (the
    calls' events and the farm's instance-hours) as the bot. `deployments` holds (deployment
    id, account, what to ask); returns how many events were committed."""
    repo = Repo(str(repo_path))
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
