"""The control plane's routes.

Every route but sign-in takes an account's key (`Authorization: Bearer fmk_...`), unscoped:
a key scoped to one deployment is for calling it at the gateway, not for managing the
account. Whatever id a request names, it reaches only the caller's own keys and deployments:
another account's id is answered exactly as a missing one (404), so ids tell nothing.

Errors are formarket's: `{"error": {"message", "hint", "code"}}`, never a traceback.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, and the
account dependency is made inside `create_app`, where a postponed annotation could not be
found again.)
"""

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from formarket.accounts.credit import MAX_TOPUP
from formarket.accounts.github_login import LoginError
from formarket.accounts.keyformat import KEY_PATTERN
from formarket.accounts.store import AccountView, KeyView
from formarket.accounts.subscriptions import AlreadySubscribed, InsufficientCredit
from formarket.control.context import Control
from formarket.control.credit_notice import credit_notice
from formarket.control.dashboard import add_dashboard
from formarket.control.deployments import summary
from formarket.control.invoices import add_invoices
from formarket.control.payments import PaymentsError, WebhookRefused
from formarket.control.subscriptions import add_subscriptions
from formarket.control.usage import account_usage
from formarket.deploy.forecast import MonthlyUsage
from formarket.deploy.forecast import forecast as forecast_month
from formarket.deploy.lifecycle import dependents
from formarket.deploy.lifecycle import stop as stop_deployments
from formarket.deploy.lifecycle import upgrade as upgrade_deployment
from formarket.deploy.request import DeployOptions, RefusedError, run
from formarket.errors import FormarketError, NotFoundError, UsageError
from formarket.farm.desired import read_deployments
from formarket.farm.settings import open_market
from formarket.farm.status import gateway_state, progress
from formarket.gateway.routes import load_routes
from formarket.schemas.pricing import PLATFORM_CURRENCY
from formarket.schemas.usage import DEPLOYMENT_PATTERN
from formarket.yamldoc import preload_fast_reader

__all__ = ["create_app", "openapi_document"]

_KEY_RE = re.compile(KEY_PATTERN)
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_DEPLOYMENT_ID = Annotated[str, Path(pattern=DEPLOYMENT_PATTERN, max_length=63)]
_KEY_ID = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


class ApiFailure(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        hint: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.hint = status, message, code, hint
        self.headers = headers or {}


def _failure(
    status: int, message: str, code: str, hint: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "code": code, "hint": hint}}, status, headers=headers
    )


# --- bodies ------------------------------------------------------------------------------


class SignIn(BaseModel):
    model_config = _FROZEN
    github_token: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A GitHub OAuth token (from the device flow).",
    )
    key_name: str = Field(default="", max_length=100, description="What to call the new key.")


class NewKey(BaseModel):
    model_config = _FROZEN
    name: str = Field(default="", max_length=100)
    deployment: str | None = Field(
        default=None, pattern=DEPLOYMENT_PATTERN, description="Only this deployment (default all)."
    )
    expires_at: datetime | None = Field(default=None, description="When it stops working.")


class ForecastUsage(BaseModel):
    model_config = _FROZEN
    calls: int = Field(ge=0, le=10**12, description="Calls a month.")
    input_tokens: int = Field(default=0, ge=0, le=10**8, description="Of an average call.")
    output_tokens: int = Field(default=0, ge=0, le=10**8, description="Of an average call.")


class ForecastOut(BaseModel):
    model_config = _FROZEN
    listing: str
    currency: str | None
    amount: Decimal | None = Field(description="None: its terms cannot serve that usage.")
    basis: str


class NewDeployment(BaseModel):
    model_config = _FROZEN
    agent: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    solution: str | None = Field(default=None, max_length=200)
    version: str | None = Field(default=None, max_length=100)
    vcpus: int | None = Field(default=None, ge=1, le=256)
    memory_mib: int | None = Field(default=None, ge=64, le=4 << 20)
    gpu: str | None = Field(default=None, max_length=100)
    settings: tuple[str, ...] = Field(default=(), max_length=64, description="KEY=VALUE items.")
    idle_after: str | None = Field(
        default=None, max_length=20, description="Scale to zero after this long idle (15m)."
    )
    dry_run: bool = Field(default=False, description="Check and plan, commit nothing.")
    forecast: ForecastUsage | None = Field(
        default=None, description="Forecast what a month would cost at this usage."
    )


class UpgradeRequest(BaseModel):
    model_config = _FROZEN
    to: str | None = Field(
        default=None, max_length=100, description="The version (default: the newest not yanked)."
    )
    dry_run: bool = Field(default=False, description="Check, commit nothing.")


class Upgraded(BaseModel):
    model_config = _FROZEN
    id: str
    listing: str
    old_version: str
    new_version: str
    warnings: tuple[str, ...]
    committed: str | None = Field(
        description="The bot's commit; none for a dry run or when it runs that version already."
    )


class Stopped(BaseModel):
    model_config = _FROZEN
    stopped: tuple[str, ...] = Field(description="The deployments stopped, agents first.")
    committed: str | None


class Error(BaseModel):
    model_config = _FROZEN
    message: str
    code: str
    hint: str


class ErrorBody(BaseModel):
    model_config = _FROZEN
    error: Error


class KeyOut(BaseModel):
    model_config = _FROZEN
    id: str
    name: str
    shown: str
    deployment: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(BaseModel):
    model_config = _FROZEN
    key: str = Field(description="The key itself: shown this once, never again.")
    account: str
    details: KeyOut


class KeyList(BaseModel):
    model_config = _FROZEN
    keys: tuple[KeyOut, ...]


class DeploymentSummary(BaseModel):
    model_config = _FROZEN
    id: str
    kind: str
    listing: str
    version: str
    state: str
    vcpus: int
    memory_mib: int


class DeploymentList(BaseModel):
    model_config = _FROZEN
    deployments: tuple[DeploymentSummary, ...]


class DeploymentDetail(BaseModel):
    model_config = _FROZEN
    desired: dict[str, Any]
    actual: str
    endpoint: str | None = Field(description="The gateway's base URL, once the farm routes it.")
    model: str = Field(description="The `model` to send to the gateway: the deployment's id.")


class Planned(BaseModel):
    model_config = _FROZEN
    plan: tuple[str, ...]
    deployments: tuple[DeploymentSummary, ...]
    where: dict[str, str]
    committed: str | None
    forecast: tuple[ForecastOut, ...] | None = Field(
        default=None, description="A month's cost at the usage asked for, per listing."
    )


class UsageRow(BaseModel):
    model_config = _FROZEN
    day: str
    deployment: str
    calls: int
    failed: int
    input_tokens: int
    output_tokens: int
    seconds: int


class UsageOut(BaseModel):
    model_config = _FROZEN
    account: str
    pseudonym: str = Field(
        description="The name the account has in git: its usage events and deployments carry"
        " this keyed hash of the login, never the login."
    )
    rows: tuple[UsageRow, ...]


class TopUpRequest(BaseModel):
    model_config = _FROZEN
    amount: Decimal = Field(
        gt=0,
        le=MAX_TOPUP,
        max_digits=7,
        decimal_places=2,
        description=f'How much credit to buy, in {PLATFORM_CURRENCY}, such as "10.00".',
    )


class TopUpCreated(BaseModel):
    model_config = _FROZEN
    id: str = Field(description="The checkout's id: the top-up is credited once it is paid.")
    url: str = Field(description="Where to pay: the payment provider's checkout page.")
    amount: Decimal
    currency: str


class TopUpOut(BaseModel):
    model_config = _FROZEN
    id: str
    amount: Decimal
    currency: str
    state: str = Field(description="open (not paid yet), credited or expired.")
    created_at: datetime
    settled_at: datetime | None


class BalanceOut(BaseModel):
    model_config = _FROZEN
    account: str
    currency: str
    balance: Decimal = Field(description="Your prepaid credit: what calls may still spend.")
    available: Decimal = Field(description="Of it, what no gateway holds for calls right now.")
    held: Decimal = Field(description="Held by gateways for calls in progress or soon.")
    credited: Decimal = Field(description="Every top-up credited, in all.")
    spent: Decimal = Field(
        description="What calls have spent, as gateways last wrote it, and the instance time"
        " of your deployments priced by the hour."
    )
    topups: tuple[TopUpOut, ...]
    notice: str | None = Field(
        default=None,
        description="Set while your balance is at or below zero: what happens, and when.",
    )
    zero_since: datetime | None = Field(
        default=None, description="Since when the farm has found your balance at zero."
    )
    stops_at: datetime | None = Field(
        default=None,
        description="When your deployments priced by the hour stop unless you top up (the"
        " grace of the platform's terms after zero_since).",
    )


class WebhookOut(BaseModel):
    model_config = _FROZEN
    received: bool
    outcome: str = Field(description="credited, expired, unchanged or ignored.")


class LoginConfig(BaseModel):
    model_config = _FROZEN
    client_id: str
    server_url: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 429)
}


# The payment provider's routes: 502 when it did not answer, 503 when top-ups are off.
_PROVIDER_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (502, 503)
}


def _key_out(view: KeyView) -> KeyOut:
    return KeyOut(
        id=view.id,
        name=view.name,
        shown=view.shown,
        deployment=view.deployment,
        created_at=view.created_at,
        expires_at=view.expires_at,
        revoked_at=view.revoked_at,
    )


def create_app(control: Control | None = None) -> FastAPI:
    """The API over `control`; without one, only for its OpenAPI document."""

    # The routes read listings in FastAPI's worker threads.
    preload_fast_reader()

    def ctl() -> Control:
        if control is None:
            raise ApiFailure(503, "the control plane is not configured", "unavailable")
        return control

    app = FastAPI(
        title="formarket control plane",
        version="1",
        description="Accounts' keys, deployments, usage, credit and invoices. Sign in with"
        " `formarket login`.",
        responses=_ERRORS,
    )

    @app.exception_handler(ApiFailure)
    async def _api_failure(_request: Request, exc: ApiFailure) -> JSONResponse:
        return _failure(exc.status, exc.message, exc.code, exc.hint, exc.headers)

    @app.exception_handler(FormarketError)
    async def _formarket(_request: Request, exc: FormarketError) -> JSONResponse:
        status, code = 400, "invalid_request"
        if isinstance(exc, NotFoundError):
            status, code = 404, "not_found"
        elif isinstance(exc, RefusedError):
            status, code = 422, "refused"
        elif isinstance(exc, LoginError):
            status, code = 401, "sign_in_failed"
        elif isinstance(exc, InsufficientCredit):
            status, code = 402, "insufficient_quota"
        elif isinstance(exc, AlreadySubscribed):
            status, code = 409, "already_subscribed"
        return _failure(status, exc.message, code, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _failure(422, f"{where}: {first.get('msg', 'invalid')}", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _failure(exc.status_code, str(exc.detail), "http_error")

    @app.middleware("http")
    async def _bounded(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        limit = control.max_body if control is not None else 0
        if length is not None and (not length.isdigit() or int(length) > limit):
            return _failure(413, "the request body is too large", "body_too_large")
        if request.headers.get("transfer-encoding") and length is None:
            return _failure(411, "send the body with a Content-Length", "length_required")
        return await call_next(request)

    def account(
        authorization: Annotated[str | None, Header()] = None,
    ) -> AccountView:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not _KEY_RE.match(token):
            raise ApiFailure(
                401,
                "no account key: send `Authorization: Bearer <key>`",
                "missing_api_key",
                "`formarket login` makes one",
                {"WWW-Authenticate": "Bearer"},
            )
        grant = ctl().store.authenticate(token)
        if grant is None:
            raise ApiFailure(
                401,
                "invalid, revoked or expired key",
                "invalid_api_key",
                "`formarket login` makes a new one",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if grant.deployment is not None:
            raise ApiFailure(
                403,
                "this key is scoped to one deployment: it calls that deployment only",
                "scoped_key",
                "use a key for all of your deployments (`formarket keys create`)",
            )
        found = ctl().store.account(grant.account)
        if found is None:
            raise ApiFailure(401, "invalid, revoked or expired key", "invalid_api_key")
        wait = ctl().limiter.take(found.login)
        if wait:
            raise ApiFailure(
                429,
                "too many requests for this account",
                "rate_limited",
                "wait and try again",
                {"Retry-After": ctl().limiter.retry_after(wait)},
            )
        return found

    Account = Annotated[AccountView, Depends(account)]

    # --- signing in ------------------------------------------------------------------------

    @app.get("/v1/login/config", response_model=LoginConfig)
    def login_config() -> LoginConfig:
        """The OAuth app the command line signs in to with GitHub's device flow."""
        github = ctl().github()
        try:
            return LoginConfig(client_id=github.client_id, server_url=github.server_url)
        finally:
            github.close()

    @app.post("/v1/login/github", response_model=KeyCreated, status_code=201)
    def login_github(body: SignIn, request: Request) -> KeyCreated:
        """Turn a GitHub token (from the device flow) into a new key of the GitHub user's
        account, made on first sign-in."""
        client = request.client.host if request.client else "unknown"
        wait = ctl().sign_in_limiter.take(client)
        if wait:
            raise ApiFailure(
                429, "too many sign-ins from this address", "rate_limited",
                headers={"Retry-After": ctl().sign_in_limiter.retry_after(wait)},
            )  # fmt: skip
        github = ctl().github()
        try:
            user = github.user(body.github_token)
        finally:
            github.close()
        signed = ctl().store.sign_in(user.login, user.id)
        key, view = ctl().store.create_key(signed, name=body.key_name or "formarket login")
        return KeyCreated(key=key, account=signed.login, details=_key_out(view))

    # --- keys ------------------------------------------------------------------------------

    @app.get("/v1/keys", response_model=KeyList)
    def list_keys(me: Account) -> KeyList:
        """Your keys, each shown by its last four characters only."""
        return KeyList(keys=tuple(_key_out(v) for v in ctl().store.keys(me)))

    @app.post("/v1/keys", response_model=KeyCreated, status_code=201)
    def create_key(body: NewKey, me: Account) -> KeyCreated:
        """A new key: for all of your deployments, or only `deployment` (one of yours)."""
        if body.deployment is not None and ctl().index.get(me.login, body.deployment) is None:
            raise NotFoundError(f"no deployment {body.deployment} of yours")
        expires = body.expires_at
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        key, view = ctl().store.create_key(
            me, name=body.name, deployment=body.deployment, expires_at=expires
        )
        return KeyCreated(key=key, account=me.login, details=_key_out(view))

    @app.delete("/v1/keys/{key_id}", response_model=KeyOut)
    def revoke_key(key_id: _KEY_ID, me: Account) -> KeyOut:
        """Revoke one of your keys: every gateway refuses it from its next call on."""
        return _key_out(ctl().store.revoke_key(me, key_id))

    # --- deployments -----------------------------------------------------------------------

    @app.get("/v1/deployments", response_model=DeploymentList)
    def list_deployments(me: Account) -> Response:
        """Your deployments, running and stopped."""
        return Response(ctl().index.encoded_list(me.login), media_type="application/json")

    @app.post("/v1/deployments", response_model=Planned, status_code=201)
    def deploy(body: NewDeployment, me: Account) -> Planned:
        """Check, plan and (unless `dry_run`) commit new deployments for your account, as
        `formarket deploy` does; the bot commits them with you as the requester."""
        lines: list[str] = []
        options = DeployOptions(
            agent=body.agent,
            model=body.model,
            solution=body.solution,
            version=body.version,
            vcpus=body.vcpus,
            memory_mib=body.memory_mib,
            gpu=body.gpu,
            sets=body.settings,
            idle_after=body.idle_after,
            account=me.login,
            requester=me.login,
            usage=None
            if body.forecast is None
            else MonthlyUsage(
                body.forecast.calls, body.forecast.input_tokens, body.forecast.output_tokens
            ),
        )
        done = run(
            ctl().farm,
            options,
            dry_run=body.dry_run,
            echo=lines.append,
            pseudonyms=ctl().pseudonyms,
        )
        return Planned(
            plan=tuple(done.lines),
            deployments=tuple(
                DeploymentSummary.model_validate(summary(d)) for d in done.resolved.deployments
            ),
            where=dict(done.where),
            committed=done.commit.decode() if done.commit else None,
            forecast=None
            if options.usage is None
            else tuple(
                ForecastOut(listing=f.listing, currency=f.currency, amount=f.amount, basis=f.basis)
                for f in forecast_month(done.resolved.prices, options.usage)
            ),
        )

    @app.get("/v1/deployments/{deployment_id}", response_model=DeploymentDetail)
    def show_deployment(deployment_id: _DEPLOYMENT_ID, me: Account) -> DeploymentDetail:
        """One of your deployments: what should run, what the farm last saw, where to call it."""
        found = ctl().index.get(me.login, deployment_id)
        if found is None:
            raise NotFoundError(f"no deployment {deployment_id} of yours")
        routed = any(
            r.deployment == found.id for r in load_routes(gateway_state(ctl().farm).routes).routes
        )
        actual = progress(ctl().farm, found.id) if found.state == "running" else "stopped"
        return DeploymentDetail(
            desired=found.model_dump(mode="json"),
            actual=actual,
            endpoint=f"{ctl().gateway_url.rstrip('/')}/v1" if routed else None,
            model=found.id,
        )

    @app.delete("/v1/deployments/{deployment_id}", response_model=Stopped)
    def stop_deployment(
        deployment_id: _DEPLOYMENT_ID,
        me: Account,
        cascade: Annotated[
            bool, Query(description="Stop the agent deployments that call this model too.")
        ] = False,
    ) -> Stopped:
        """Stop one of your deployments (the bot commits it stopped; the farm removes it). A
        model that a running agent of yours calls is refused unless `cascade`, which stops
        them together, as `formarket deployments stop --cascade` does."""
        found = ctl().index.get(me.login, deployment_id)
        if found is None:
            raise NotFoundError(f"no deployment {deployment_id} of yours")
        repo = open_market(ctl().farm)
        try:
            current = read_deployments(repo, ctl().farm.branch, problems=[])
        finally:
            repo.close()
        if any(
            not ctl().pseudonyms.owns(d.account, me.login) for d in dependents(current, found.id)
        ):
            # Another account's agent calls it: not this account's to stop.
            raise ApiFailure(
                409,
                f"{found.id} is the model of a running agent deployment of another account",
                "in_use",
                "ask the operator",
            )
        try:
            ids, commit = stop_deployments(
                ctl().farm, found.id, cascade=cascade, echo=lambda _line: None
            )
        except UsageError as exc:
            raise ApiFailure(409, exc.message, "in_use", "repeat with ?cascade=true") from exc
        return Stopped(stopped=tuple(ids), committed=commit.decode() if commit else None)

    @app.post("/v1/deployments/{deployment_id}/upgrade", response_model=Upgraded)
    def upgrade(deployment_id: _DEPLOYMENT_ID, body: UpgradeRequest, me: Account) -> Upgraded:
        """Move one of your running deployments to another published version without downtime,
        as `formarket deployments upgrade` does: the new VM starts beside the old one, the
        gateway's route moves once it answers, then the old one stops."""
        found = ctl().index.get(me.login, deployment_id)
        if found is None:
            raise NotFoundError(f"no deployment {deployment_id} of yours")
        done = upgrade_deployment(ctl().farm, found.id, body.to, dry_run=body.dry_run)
        return Upgraded(
            id=found.id,
            listing=done.old.listing.id,
            old_version=done.old.listing.version,
            new_version=done.new.listing.version,
            warnings=done.warnings,
            committed=done.commit.decode() if done.commit else None,
        )

    # --- usage -----------------------------------------------------------------------------

    @app.get("/v1/usage", response_model=UsageOut)
    def usage(
        me: Account,
        since: Annotated[
            str | None,
            Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="From this day on."),
        ] = None,
    ) -> UsageOut:
        """Your calls, by day and by deployment, as committed (what a close would count)."""
        try:
            first = date.fromisoformat(since) if since is not None else None
        except ValueError as exc:
            raise ApiFailure(422, f"since: {since!r} is not a day", "invalid_request") from exc
        repo = open_market(ctl().farm)
        try:
            rows = account_usage(repo, ctl().farm.branch, ctl().pseudonyms.names(me.login), first)
        finally:
            repo.close()
        return UsageOut(
            account=me.login,
            pseudonym=ctl().pseudonyms.of(me.login),
            rows=tuple(UsageRow.model_validate(r) for r in rows),
        )

    # --- credit ----------------------------------------------------------------------------

    @app.get("/v1/balance", response_model=BalanceOut)
    def balance(me: Account) -> BalanceOut:
        """Your prepaid credit and your top-ups; while it is at zero, a notice of when your
        deployments priced by the hour stop."""
        view = ctl().credit.balance(me)
        told = credit_notice(ctl().credit, ctl().farm, me)
        return BalanceOut(
            notice=told.notice,
            zero_since=told.zero_since,
            stops_at=told.stops_at,
            account=me.login,
            currency=view.currency,
            balance=view.balance,
            available=view.available,
            held=view.held,
            credited=view.credited,
            spent=view.spent,
            topups=tuple(
                TopUpOut(
                    id=t.id,
                    amount=t.amount,
                    currency=t.currency,
                    state=t.state,
                    created_at=t.created_at,
                    settled_at=t.settled_at,
                )
                for t in ctl().credit.topups(me)
            ),
        )

    @app.post(
        "/v1/topups", response_model=TopUpCreated, status_code=201, responses=_PROVIDER_ERRORS
    )
    def top_up(body: TopUpRequest, me: Account, request: Request) -> TopUpCreated:
        """Buy credit: a checkout at the payment provider. Pay at `url`; the balance grows
        once the provider says it was paid."""
        payments = ctl().payments
        if payments is None:
            raise ApiFailure(
                503,
                "top-ups are off on this control plane",
                "payments_off",
                "the operator sets FORMARKET_PAYMENTS_KEY and FORMARKET_PAYMENTS_WEBHOOK_SECRET",
            )
        base = str(request.base_url).rstrip("/")
        try:
            checkout = payments.checkout(
                me, body.amount, f"{base}/dashboard?topup=paid", f"{base}/dashboard?topup=cancelled"
            )
        except PaymentsError as exc:
            raise ApiFailure(502, exc.message, "payments_unavailable", exc.hint) from exc
        ctl().credit.open_topup(me, checkout.id, checkout.amount)
        return TopUpCreated(
            id=checkout.id, url=checkout.url, amount=checkout.amount, currency=checkout.currency
        )

    @app.post("/v1/payments/webhook", response_model=WebhookOut, responses=_PROVIDER_ERRORS)
    async def payments_webhook(
        request: Request,
        stripe_signature: Annotated[str | None, Header()] = None,
    ) -> WebhookOut:
        """The payment provider's webhook (no key: its signature is what is checked). A
        forged, replayed or malformed one is refused and changes nothing; a genuine one is
        acted on as the provider now says the checkout is, however often it comes."""
        payments = ctl().payments
        if payments is None:
            raise ApiFailure(503, "top-ups are off on this control plane", "payments_off")
        payload = await request.body()
        try:
            event = payments.event(payload, stripe_signature)
        except WebhookRefused as exc:
            raise ApiFailure(400, exc.message, "webhook_refused") from exc
        try:
            outcome = await run_in_threadpool(payments.act, event, ctl().credit)
        except PaymentsError as exc:
            raise ApiFailure(502, exc.message, "payments_unavailable") from exc
        return WebhookOut(received=True, outcome=outcome)

    add_subscriptions(app, ctl, Account)
    add_invoices(app, ctl, Account)
    add_dashboard(app, ctl)
    return app


def openapi_document() -> bytes:
    """The API's OpenAPI document (`formarket control openapi`)."""
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True).encode() + b"\n"
