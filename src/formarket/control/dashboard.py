"""The web dashboard: server-rendered pages of a signed-in user's deployments, keys and usage,
signed in with GitHub's web flow. No JavaScript and no build step.

- Signing in: `/dashboard/login` keeps a fresh state in the database (good once, ten minutes)
  and in a cookie of the browser that started it, then sends the browser to GitHub. The
  callback takes the state from the database and demands the same state in the cookie: a
  replayed callback finds no state, a forged one (made in another browser, or never started)
  finds no cookie or another one.
- The session cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` when served over HTTPS; the
  session is stored hashed and ends after eight hours or at sign-out.
- Every form carries a CSRF token derived from the session (an HMAC-free derivation suffices:
  the session token is secret and random, and the token reveals nothing of it), checked on
  every POST before anything changes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment

from formarket.accounts.github_login import LoginError
from formarket.accounts.store import AccountView
from formarket.control.context import Control
from formarket.control.deployments import summary
from formarket.control.usage import account_usage
from formarket.errors import FormarketError
from formarket.farm.desired import set_state
from formarket.farm.settings import open_market
from formarket.market.governance import bot_identity
from formarket.site.charts import bar_chart

__all__ = ["add_dashboard"]

SESSION_COOKIE = "fmk_session"
STATE_COOKIE = "fmk_oauth_state"
_SESSION_TTL = timedelta(hours=8)
_STATE_TTL = timedelta(minutes=10)
_MAX_FORM = 8 << 10
# No script at all; styles inline; forms post only here; no framing.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

_TEMPLATES = {
    "base": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · formarket</title>
<style>
body{font-family:Roboto,system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#4051b5;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1rem;align-items:center}
header a{color:#fff}main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
pre{background:#f0f0f0;padding:.5rem;white-space:pre-wrap;font-size:.85rem}
.fm-chart{width:100%;height:auto}.fm-chart__bar{fill:#4051b5}.fm-chart__grid{stroke:#ddd}
.fm-chart__axis{font-size:11px;fill:#555}.new-key{background:#fff3cd;padding:.5rem}
form.inline{display:inline}button{cursor:pointer}
</style></head><body>
<header><strong>formarket</strong><span>{{ title }}</span>
{% if account %}<span style="margin-left:auto">{{ account }}</span>
<form class="inline" method="post" action="/dashboard/logout">
<input type="hidden" name="csrf" value="{{ csrf }}"><button>Sign out</button></form>{% endif %}
</header><main>{% block body %}{% endblock %}</main></body></html>""",
    "home": """{% extends "base" %}{% block body %}
{% if new_key %}<p class="new-key">Your new key (shown this once):
<code id="new-key">{{ new_key }}</code></p>{% endif %}
<h2>My deployments</h2>
{% if deployments %}<table><tr><th>Deployment</th><th>Listing</th><th>State</th><th></th></tr>
{% for d in deployments %}<tr><td><code>{{ d.id }}</code></td>
<td>{{ d.listing }}@{{ d.version }} ({{ d.kind }})</td><td>{{ d.state }}</td><td>
{% if d.state == "running" %}<details><summary>Call it</summary>
<pre>curl -s {{ gateway }}/v1/chat/completions -H "Authorization: Bearer ${{ key_variable }}" \\
  -H 'Content-Type: application/json' \\
  -d '{"model": "{{ d.id }}", "messages": [{"role": "user", "content": "Hello"}]}'</pre>
<pre>import json, os, urllib.request
body = {"model": "{{ d.id }}", "messages": [{"role": "user", "content": "Hello"}]}
request = urllib.request.Request(
    "{{ gateway }}/v1/chat/completions", data=json.dumps(body).encode(),
    headers={"Authorization": "Bearer " + os.environ["{{ key_variable }}"],
             "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"])</pre>
</details>
<form class="inline" method="post" action="/dashboard/deployments/{{ d.id }}/stop">
<input type="hidden" name="csrf" value="{{ csrf }}"><button>Stop</button></form>{% endif %}
</td></tr>{% endfor %}</table>
{% else %}<p>No deployments yet: <code>formarket deploy</code>, or the catalog's
deploy button.</p>{% endif %}
<h2>My keys</h2>
<table><tr><th>Key</th><th>Name</th><th>Scope</th><th>Expires</th><th>State</th><th></th></tr>
{% for k in keys %}<tr><td><code>{{ k.shown }}</code></td><td>{{ k.name }}</td>
<td>{{ k.deployment or "all deployments" }}</td><td>{{ k.expires_at or "never" }}</td>
<td>{{ "revoked" if k.revoked_at else "active" }}</td><td>{% if not k.revoked_at %}
<form class="inline" method="post" action="/dashboard/keys/{{ k.id }}/revoke">
<input type="hidden" name="csrf" value="{{ csrf }}"><button>Revoke</button></form>{% endif %}
</td></tr>{% endfor %}</table>
<form method="post" action="/dashboard/keys"><input type="hidden" name="csrf" value="{{ csrf }}">
<label>Name <input name="name" maxlength="100"></label>
<label>Only deployment <input name="deployment" placeholder="all"></label>
<button>Create a key</button></form>
<h2>My usage by day</h2>
{% if chart %}{{ chart | safe }}
<table><tr><th>Day</th><th>Deployment</th><th>Calls</th><th>Input tokens</th>
<th>Output tokens</th></tr>
{% for r in usage %}<tr><td>{{ r.day }}</td><td>{{ r.deployment }}</td><td>{{ r.calls }}</td>
<td>{{ r.input_tokens }}</td><td>{{ r.output_tokens }}</td></tr>{% endfor %}</table>
{% else %}<p>No usage committed yet.</p>{% endif %}{% endblock %}""",
    "sign_in": """{% extends "base" %}{% block body %}<p>{{ message }}</p>
<p><a href="/dashboard/login">Sign in with GitHub</a></p>{% endblock %}""",
    "message": """{% extends "base" %}{% block body %}<p>{{ message }}</p>{% endblock %}""",
}
_ENV = Environment(loader=DictLoader(_TEMPLATES), autoescape=True)


def _csrf(session: str) -> str:
    return hashlib.sha256(b"formarket-csrf:" + session.encode()).hexdigest()


def _page(template: str, title: str, *, status: int = 200, **context: object) -> HTMLResponse:
    html = _ENV.get_template(template).render(title=title, **context)
    return HTMLResponse(
        html,
        status,
        headers={
            "Content-Security-Policy": _CSP,
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )


def _cookie(
    answer: Response, request: Request, name: str, value: str, ttl: timedelta, path: str
) -> None:
    """A cookie scripts cannot read, sent only over TLS when the page came over TLS, and not on
    other sites' requests but for a top-level navigation (the sign-in's return from GitHub)."""
    answer.set_cookie(
        name,
        value,
        max_age=int(ttl.total_seconds()),
        path=path,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
    )


def add_dashboard(app: FastAPI, ctl: Callable[[], Control]) -> None:
    def signed_in(request: Request) -> tuple[AccountView, str] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        account = ctl().store.session_account(token) if token else None
        return (account, token) if account is not None else None

    def sign_in_page(message: str, status: int = 200) -> HTMLResponse:
        return _page("sign_in", "Sign in", message=message, status=status)

    async def form(request: Request, session: str) -> dict[str, str] | None:
        """The POSTed form when its CSRF token belongs to this session, else None."""
        raw = await request.body()
        if len(raw) > _MAX_FORM:
            return None
        fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        given = fields.get("csrf", "")
        return fields if hmac.compare_digest(given, _csrf(session)) else None

    def home(
        request: Request, account: AccountView, session: str, new_key: str = ""
    ) -> HTMLResponse:
        control = ctl()
        repo = open_market(control.farm)
        try:
            usage = account_usage(repo, control.farm.branch, account.login, None)
        finally:
            repo.close()
        by_day: dict[str, int] = {}
        for row in usage:
            by_day[str(row["day"])] = by_day.get(str(row["day"]), 0) + int(str(row["calls"]))
        chart = (
            bar_chart(
                [(day, Decimal(calls)) for day, calls in sorted(by_day.items())],
                title="Calls by day",
                unit="calls",
                chart_id="usage",
            )
            if by_day
            else ""
        )
        return _page(
            "home",
            "My dashboard",
            account=account.login,
            deployments=[summary(d) for d in control.index.of(account.login)],
            keys=control.store.keys(account),
            usage=usage,
            chart=chart,
            csrf=_csrf(session),
            gateway=control.gateway_url.rstrip("/"),
            new_key=new_key,
            # The variable the farm's comments and the READMEs name for a caller's key.
            key_variable="FORMARKET_KEY",
        )

    @app.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Sign in to see your deployments, keys and usage.")
        return home(request, *found)

    @app.get("/dashboard/login", include_in_schema=False)
    def login(request: Request) -> Response:
        # Each start keeps a row until it expires: starts are limited per address.
        client = request.client.host if request.client else "unknown"
        if ctl().sign_in_limiter.take(client):
            return sign_in_page("Too many sign-ins from here; wait a little.", 429)
        github = ctl().github()
        try:
            url, state = github.authorization_url(str(request.url_for("callback")))
        finally:
            github.close()
        ctl().store.keep_login_state(state, _STATE_TTL)
        answer = RedirectResponse(url, status_code=302)
        _cookie(answer, request, STATE_COOKIE, state, _STATE_TTL, "/dashboard/auth")
        return answer

    @app.get("/dashboard/auth/callback", include_in_schema=False, name="callback")
    def callback(request: Request) -> Response:
        state = request.query_params.get("state", "")
        kept = request.cookies.get(STATE_COOKIE, "")
        # The database's copy is spent first, whatever follows: a callback is tried once.
        known = ctl().store.take_login_state(state) if state else False
        if not (known and kept and hmac.compare_digest(kept, state)):
            return sign_in_page("That sign-in was not started here, or was used already.", 400)
        github = ctl().github()
        redirect_uri = str(request.url_for("callback"))
        try:
            token = github.finish_web(str(request.url), state, redirect_uri)
            user = github.user(token)
        except (LoginError, FormarketError):
            return sign_in_page("GitHub did not confirm that sign-in.", 400)
        finally:
            github.close()
        account = ctl().store.sign_in(user.login, user.id)
        session = ctl().store.start_session(account, _SESSION_TTL)
        answer = RedirectResponse("/dashboard", status_code=303)
        answer.delete_cookie(STATE_COOKIE, path="/dashboard/auth")
        _cookie(answer, request, SESSION_COOKIE, session, _SESSION_TTL, "/dashboard")
        return answer

    def refused() -> HTMLResponse:
        message = "That form is stale or was not sent from your dashboard."
        return _page("message", "Refused", message=message, status=403)

    @app.post("/dashboard/keys", include_in_schema=False)
    async def create_key(request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Your session ended; sign in again.", 401)
        account, session = found
        fields = await form(request, session)
        if fields is None:
            return refused()
        deployment = fields.get("deployment", "").strip() or None
        if deployment is not None and ctl().index.get(account.login, deployment) is None:
            return _page("message", "Not found", message="No such deployment of yours.", status=404)
        try:
            key, _view = ctl().store.create_key(
                account, name=fields.get("name", ""), deployment=deployment
            )
        except FormarketError as exc:
            return _page("message", "Refused", message=exc.message, status=400)
        return home(request, account, session, new_key=key)

    @app.post("/dashboard/keys/{key_id}/revoke", include_in_schema=False)
    async def revoke_key(key_id: str, request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Your session ended; sign in again.", 401)
        account, session = found
        if await form(request, session) is None:
            return refused()
        try:
            ctl().store.revoke_key(account, key_id)
        except FormarketError:
            return _page("message", "Not found", message="No such key of yours.", status=404)
        return RedirectResponse("/dashboard", status_code=303)

    @app.post("/dashboard/deployments/{deployment_id}/stop", include_in_schema=False)
    async def stop(deployment_id: str, request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Your session ended; sign in again.", 401)
        account, session = found
        if await form(request, session) is None:
            return refused()
        control = ctl()
        deployment = control.index.get(account.login, deployment_id)
        if deployment is None:
            return _page("message", "Not found", message="No such deployment of yours.", status=404)
        repo = open_market(control.farm)
        try:
            set_state(
                repo,
                control.farm.branch,
                deployment.id,
                "stopped",
                f"Stop deployment {deployment.id} for {account.login}",
                bot_identity(repo, control.farm.branch),
            )
        finally:
            repo.close()
        return RedirectResponse("/dashboard", status_code=303)

    @app.post("/dashboard/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        found = signed_in(request)
        if found is not None:
            _account, session = found
            if await form(request, session) is None:
                return refused()
            ctl().store.end_session(session)
        answer = RedirectResponse("/dashboard", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return answer
