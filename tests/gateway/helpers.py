"""What the gateway's tests share: a marketplace repository, a client, committed events."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.market.trees import commit_tree, list_dir, read_blob
from formarket.market.writer import Identity, commit_changes
from formarket.usage.files import USAGE_ROOT

GOVERNANCE = b"maintainers: [mara-maintainer]\nbot: formarket-bot\n"


def make_market(path: Path) -> Repo:
    """A marketplace repository: just enough for the bot to be named."""
    repo = Repo.init(str(path), mkdir=True)
    commit_changes(
        repo,
        "main",
        {"registry/governance.yaml": GOVERNANCE},
        "Start",
        Identity("mara-maintainer", "mara@example.com"),
    )
    return repo


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP client for the gateway under test (the standard library's)."""

    def __init__(
        self, url: str, key: str | None = None, timeout: float = 30, keep_alive: bool = False
    ) -> None:
        parts = urlsplit(url)
        self.keep_alive = keep_alive
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.key = key
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> Reply:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        sent = {"Content-Type": "application/json"}
        token = key if key is not None else self.key
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            self.conn.request(method, path, data, sent)
            response = self.conn.getresponse()
            reply = Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        except BaseException:
            self.close()
            raise
        if not self.keep_alive or reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    def chat(self, model: str, text: str = "hello", **extra: Any) -> Reply:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return self.request("POST", "/v1/chat/completions", body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def committed_events(repo: Repo, branch: str = "main") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, event) of every line of every usage file at the branch's tip."""
    tree = commit_tree(repo, repo.refs[Ref(f"refs/heads/{branch}".encode())])
    stack = [USAGE_ROOT]
    while stack:
        folder = stack.pop()
        for name, (is_dir, sha) in list_dir(repo, tree, folder).items():
            path = f"{folder}/{name}"
            if is_dir:
                stack.append(path)
                continue
            for line in gzip.decompress(read_blob(repo, sha)).splitlines():
                yield path, json.loads(line)
