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
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from formarket.accounts.credit import check_amount
from formarket.accounts.github_login import LoginError
from formarket.accounts.store import AccountView
from formarket.control.context import Control
from formarket.control.credit_notice import credit_notice
from formarket.control.dashboard_invoices import add_invoice_pages
from formarket.control.dashboard_pages import render
from formarket.control.deployments import summary
from formarket.control.earnings import statements_of
from formarket.control.look import Look, load_look
from formarket.control.payments import PaymentsError
from formarket.control.publishers import publishers_of
from formarket.control.subscriptions import subscriptions_of
from formarket.control.usage import account_usage, listing_usage
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
_PAYMENTS_OFF = "Top-ups are off on this control plane: its operator has set no payment provider."
# What the provider's return to the dashboard means (its `topup` query).
_TOPUP_NOTES = {
    "paid": "Paid: your balance grows as soon as the payment provider confirms it.",
    "cancelled": "The top-up was cancelled; nothing was charged.",
}
# No script at all; the catalog's stylesheets from here (and a few rules inline), images only
# as Material's stylesheets embed them; forms post only here; no framing.
_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'"
)


def _csrf(session: str) -> str:
    return hashlib.sha256(b"formarket-csrf:" + session.encode()).hexdigest()


def _page(
    look: Look, template: str, title: str, *, status: int = 200, **context: object
) -> HTMLResponse:
    html = render(template, title, stylesheets=list(look.stylesheets), logo=look.logo, **context)
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


def _calls_chart(rows: list[dict[str, object]], title: str) -> str:
    by_day: dict[str, int] = {}
    for row in rows:
        by_day[str(row["day"])] = by_day.get(str(row["day"]), 0) + int(str(row["calls"]))
    if not by_day:
        return ""
    days = [(day, Decimal(calls)) for day, calls in sorted(by_day.items())]
    return bar_chart(days, title=title, unit="calls", chart_id="usage")


def _by_version(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        into = totals.setdefault(
            (str(row["listing"]), str(row["version"])),
            {"calls": 0, "input_tokens": 0, "output_tokens": 0},
        )
        for name in into:
            into[name] += int(str(row[name]))
    return [
        {"listing": listing, "version": version, **totals[(listing, version)]}
        for listing, version in sorted(totals)
    ]


def add_dashboard(app: FastAPI, ctl: Callable[[], Control]) -> None:
    look = load_look()

    def page(template: str, title: str, *, status: int = 200, **context: object) -> HTMLResponse:
        return _page(look, template, title, status=status, **context)

    def signed_in(request: Request) -> tuple[AccountView, str] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        account = ctl().store.session_account(token) if token else None
        return (account, token) if account is not None else None

    def sign_in_page(message: str, status: int = 200) -> HTMLResponse:
        return page("sign_in", "Sign in", message=message, status=status)

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
            usage = account_usage(
                repo, control.farm.branch, control.pseudonyms.names(account.login), None
            )
        finally:
            repo.close()
        return page(
            "home",
            "My dashboard",
            account=account.login,
            deployments=[summary(d) for d in control.index.of(account.login)],
            keys=control.store.keys(account),
            usage=usage,
            chart=_calls_chart(usage, "Calls by day"),
            csrf=_csrf(session),
            here="/dashboard",
            gateway=control.gateway_url.rstrip("/"),
            new_key=new_key,
            # The variable the farm's comments and the READMEs name for a caller's key.
            key_variable="FORMARKET_KEY",
            credit=control.credit.balance(account),
            credit_notice=credit_notice(control.credit, control.farm, account).notice,
            topups=control.credit.topups(account)[-10:][::-1],
            subscriptions=subscriptions_of(control, account),
            can_top_up=control.payments is not None,
            topup_note=_TOPUP_NOTES.get(request.query_params.get("topup", ""), ""),
        )

    @app.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Sign in to see your deployments, keys and usage.")
        return home(request, *found)

    add_invoice_pages(app, ctl, page, signed_in, _csrf)

    @app.get("/dashboard/listings", include_in_schema=False, response_class=HTMLResponse)
    def listings(request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in_page("Sign in to see the usage of the listings you publish.")
        account, session = found
        control = ctl()
        repo = open_market(control.farm)
        try:
            publishers = publishers_of(repo, control.farm.branch, account.login)
            usage = listing_usage(repo, control.farm.branch, publishers, None) if publishers else []
            statements = statements_of(repo, control.farm.branch, publishers)
        finally:
            repo.close()
        return page(
            "listings",
            "My listings",
            account=account.login,
            publishers=sorted(publishers),
            usage=usage,
            versions=_by_version(usage),
            statements=statements,
            chart=_calls_chart(usage, "Calls of my listings by day"),
            csrf=_csrf(session),
            here="/dashboard/listings",
        )

    @app.get("/dashboard/assets/{name}", include_in_schema=False)
    def asset(name: str, request: Request) -> Response:
        if name not in look.stylesheets:
            return Response(status_code=404)
        etag = look.etag(name)
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(look.stylesheets[name], media_type="text/css", headers=headers)

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
        return page("message", "Refused", message=message, status=403)

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
            return page("message", "Not found", message="No such deployment of yours.", status=404)
        try:
            key, _view = ctl().store.create_key(
                account, name=fields.get("name", ""), deployment=deployment
            )
        except FormarketError as exc:
            return page("message", "Refused", message=exc.message, status=400)
        return home(request, account, session, new_key=key)

    @app.post("/dashboard/topups", include_in_schema=False)
    async def top_up(request: Request) -> Response:
        """A checkout at the payment provider; the page links to it rather than redirecting,
        so that forms here still post nowhere but here (the CSP's form-action)."""
        found = signed_in(request)
        if found is None:
            return sign_in_page("Your session ended; sign in again.", 401)
        account, session = found
        fields = await form(request, session)
        if fields is None:
            return refused()
        payments = ctl().payments
        if payments is None:
            return page("message", "Top-ups are off", message=_PAYMENTS_OFF, status=503)
        try:
            amount = check_amount(Decimal(fields.get("amount", "").strip()))
        except (InvalidOperation, FormarketError):
            return page(
                "message",
                "Refused",
                message="A top-up is an amount in whole cents, such as 10.00.",
                status=400,
            )
        base = str(request.base_url).rstrip("/")
        try:
            checkout = payments.checkout(
                account, amount, f"{base}/dashboard?topup=paid", f"{base}/dashboard?topup=cancelled"
            )
        except PaymentsError as exc:
            return page("message", "Not now", message=exc.message, status=502)
        if not checkout.url.startswith(("https://", "http://")):
            # The page links to it: never to a script or data address, whoever answered.
            return page(
                "message",
                "Not now",
                message="The provider's checkout address is not a web address.",
                status=502,
            )
        ctl().credit.open_topup(account, checkout.id, checkout.amount)
        return page(
            "checkout",
            "Top up",
            account=account.login,
            csrf=_csrf(session),
            checkout=checkout,
        )

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
            return page("message", "Not found", message="No such key of yours.", status=404)
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
            return page("message", "Not found", message="No such deployment of yours.", status=404)
        repo = open_market(control.farm)
        try:
            set_state(
                repo,
                control.farm.branch,
                deployment.id,
                "stopped",
                f"Stop deployment {deployment.id} for {control.pseudonyms.of(account.login)}",
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
