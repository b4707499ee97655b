"""A stand-in for GitHub: a small real HTTP server speaking the REST routes `formarket.github` uses.

It holds issues, comments and label events in memory and writes webhook payloads in the shape
GitHub documents, and signs people in as GitHub does (`standins.github_oauth`: OAuth apps, the
device flow, the web flow, `GET /user`), so the issue flow and signing in run end to end without
the network: in the test suite, in `formarket demo`, or by hand
(`python -m formarket.standins.github --port 8765`).
Writes over HTTP need a token it knows; the token's login is the comment's author.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from formarket.standins.github_oauth import OAuthStandIn

__all__ = ["StandIn"]

_ROUTE = re.compile(
    r"^/repos/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/issues/(?P<number>[0-9]{1,9})"
    r"(?:/(?P<what>comments|labels|events))?$"
)
_NEW_ISSUE = re.compile(r"^/repos/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/issues$")
_MAX_BODY = 4 << 20


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "type": "Bot" if login.endswith("[bot]") else "User"}


class StandIn:
    """GitHub's issues, in memory, behind a local HTTP server."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self._lock = threading.Lock()
        self._issues: dict[tuple[str, int], dict[str, Any]] = {}
        self._comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._events: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._next_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.oauth = OAuthStandIn(lambda: self.url)

    # --- the server ------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve in a background thread; returns the base URL."""
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandIn:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what a person does on github.com --------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def open_issue(
        self, repo: str, author: str, title: str, body: str, labels: tuple[str, ...] = ()
    ) -> int:
        with self._lock:
            number = 1 + max((n for r, n in self._issues if r == repo), default=0)
            key = (repo, number)
            now = _now()
            self._issues[key] = {
                "id": self._id(),
                "number": number,
                "title": title,
                "body": body,
                "user": _user(author),
                "state": "open",
                "labels": [{"name": label} for label in labels],
                "created_at": now,
                "updated_at": now,
            }
            self._comments[key] = []
            self._events[key] = [self._label_event("labeled", lab, author) for lab in labels]
        return number

    def _label_event(self, event: str, label: str, actor: str) -> dict[str, Any]:
        return {
            "id": self._id(),
            "event": event,
            "label": {"name": label},
            "actor": _user(actor),
            "created_at": _now(),
        }

    def edit(self, repo: str, number: int, **fields: Any) -> None:
        """Change the issue's title, body or state."""
        with self._lock:
            issue = self._issues[(repo, number)]
            for name in ("title", "body", "state"):
                if name in fields:
                    issue[name] = fields[name]
            issue["updated_at"] = _now()

    def add_label(self, repo: str, number: int, label: str, actor: str) -> None:
        with self._lock:
            issue = self._issues[(repo, number)]
            if all(lab["name"] != label for lab in issue["labels"]):
                issue["labels"].append({"name": label})
            self._events[(repo, number)].append(self._label_event("labeled", label, actor))

    def remove_label(self, repo: str, number: int, label: str, actor: str) -> None:
        with self._lock:
            issue = self._issues[(repo, number)]
            issue["labels"] = [lab for lab in issue["labels"] if lab["name"] != label]
            self._events[(repo, number)].append(self._label_event("unlabeled", label, actor))

    def add_comment(self, repo: str, number: int, author: str, body: str) -> dict[str, Any]:
        with self._lock:
            comment = {
                "id": self._id(),
                "user": _user(author),
                "body": body,
                "created_at": _now(),
            }
            self._comments[(repo, number)].append(comment)
        return comment

    def issue(self, repo: str, number: int) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._issues[(repo, number)]))  # type: ignore[no-any-return]

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self._comments[(repo, number)]))  # type: ignore[no-any-return]

    # --- webhook payloads ------------------------------------------------------------------

    def payload(
        self,
        repo: str,
        number: int,
        action: str,
        sender: str,
        *,
        label: str | None = None,
        comment: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The payload GitHub sends for `issues` (opened, edited, labeled, closed) or, with a
        comment, `issue_comment` (created): the issue as it is at this moment."""
        owner, name = repo.split("/", 1)
        event: dict[str, Any] = {
            "action": action,
            "issue": self.issue(repo, number),
            "repository": {"full_name": repo, "name": name, "owner": _user(owner)},
            "sender": _user(sender),
        }
        if label is not None:
            event["label"] = {"name": label}
        if comment is not None:
            event["comment"] = comment
        return event

    def write_payload(self, path: Path, payload: Mapping[str, Any]) -> Path:
        path.write_text(json.dumps(payload), encoding="utf-8")
        return path

    # --- the REST routes -------------------------------------------------------------------

    def handle(
        self, method: str, target: str, token: str | None, body: Any
    ) -> tuple[int, Any, str]:
        """(status, JSON answer, Link header) for one request."""
        parts = urlsplit(target)
        login = self.tokens.get(token or "")
        created = _NEW_ISSUE.match(parts.path)
        if created is not None and method == "POST":
            if login is None:
                return 401, {"message": "Bad credentials"}, ""
            if not isinstance(body, dict) or not isinstance(body.get("title"), str):
                return 422, {"message": "Validation Failed"}, ""
            labels = tuple(str(label) for label in body.get("labels") or ())
            text = str(body.get("body") or "")
            number = self.open_issue(created["repo"], login, body["title"], text, labels)
            return 201, self.issue(created["repo"], number), ""
        match = _ROUTE.match(parts.path)
        if match is None:
            return 404, {"message": "Not Found"}, ""
        key = (match["repo"], int(match["number"]))
        what = match["what"]
        with self._lock:
            known = key in self._issues
        if not known:
            return 404, {"message": "Not Found"}, ""
        if method != "GET" and login is None:
            return 401, {"message": "Bad credentials"}, ""
        if method == "GET" and what is None:
            return 200, self.issue(*key), ""
        if method == "GET" and what in ("comments", "events"):
            with self._lock:
                items = list(self._comments[key] if what == "comments" else self._events[key])
            return self._page(items, parts.path, parse_qs(parts.query))
        if method == "POST" and what == "comments" and isinstance(body, dict):
            comment = body.get("body")
            if not isinstance(comment, str) or len(comment) > 65536:
                return 422, {"message": "Validation Failed"}, ""
            assert login is not None
            return 201, self.add_comment(*key, login, comment), ""
        if method == "POST" and what == "labels" and isinstance(body, dict):
            assert login is not None
            for label in body.get("labels") or ():
                self.add_label(*key, str(label), login)
            return 200, self.issue(*key)["labels"], ""
        if method == "PATCH" and what is None and isinstance(body, dict):
            self.edit(*key, **{k: v for k, v in body.items() if k in ("title", "body", "state")})
            return 200, self.issue(*key), ""
        return 404, {"message": "Not Found"}, ""

    def _page(
        self, items: list[dict[str, Any]], path: str, query: dict[str, list[str]]
    ) -> tuple[int, Any, str]:
        per_page = min(int((query.get("per_page") or ["30"])[0]), 100)
        page = max(int((query.get("page") or ["1"])[0]), 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        link = ""
        if page * per_page < len(items):
            link = f'<{self.url}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return 200, chunk, link


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._send(413, {"message": "Payload Too Large"}, "")
                return
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            signed = standin.oauth.handle(self.command, self.path, headers, raw)
            if signed is not None:
                status, kind, data, more = signed
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in more:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(400, {"message": "Problems parsing JSON"}, "")
                return
            auth = self.headers.get("Authorization") or ""
            token = auth.split(" ", 1)[1] if " " in auth else None
            try:
                status, answer, link = standin.handle(self.command, self.path, token, body)
            except ValueError:
                status, answer, link = 422, {"message": "Validation Failed"}, ""
            self._send(status, answer, link)

        def _send(self, status: int, answer: Any, link: str) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if link:
                self.send_header("Link", link)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local stand-in for GitHub's issue API.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token", action="append", default=[], metavar="TOKEN=LOGIN", help="A known token."
    )
    parser.add_argument(
        "--oauth-app",
        action="append",
        default=[],
        metavar="CLIENT_ID:SECRET[:CALLBACK]",
        help="An OAuth app people may sign in to (CALLBACK: where the web flow may return).",
    )
    parser.add_argument(
        "--device-interval", type=int, default=5, help="Seconds between device-flow polls."
    )
    args = parser.parse_args(argv)
    tokens = dict(item.split("=", 1) for item in args.token if "=" in item)
    standin = StandIn(tokens)
    standin.oauth.interval = args.device_interval
    for item in args.oauth_app:
        client_id, _, rest = item.partition(":")
        secret, _, callback = rest.partition(":")
        standin.oauth.add_app(client_id, secret, callback)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(standin))
    standin._server = server
    print(f"GitHub stand-in on {standin.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
