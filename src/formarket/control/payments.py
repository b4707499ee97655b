"""Top-ups through the payment provider, with the `stripe` library: a Checkout Session per
top-up, and its webhook verified and acted on.

The provider's address and keys are settings (FORMARKET_PAYMENTS_URL, _KEY, _WEBHOOK_SECRET):
the stand-in in `formarket.standins.payments` in tests and the demo, Stripe itself one setting
away. A webhook is believed only when its signature verifies (`stripe.Webhook.construct_event`,
which also refuses one signed more than five minutes ago: a replay). Even then the event's copy
of the session is not what is acted on: the session is asked of the provider again, so an event
delivered late, twice or out of order acts on the session as it is now, and the accounts
database credits a top-up once (formarket.accounts.credit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import stripe

from formarket.accounts.credit import CreditStore, check_amount
from formarket.accounts.store import AccountView
from formarket.errors import FormarketError, InputError, UsageError
from formarket.schemas.pricing import PLATFORM_CURRENCY
from formarket.settings import PAYMENTS_KEY, PAYMENTS_URL, PAYMENTS_WEBHOOK_SECRET

__all__ = ["Payments", "PaymentsError", "WebhookRefused", "payments_from_settings"]

# Stripe's amounts are integers in the currency's minor unit; the platform's currency has cents.
_MINOR = 100
# Events signed longer ago than this are replays (Stripe's own default).
TOLERANCE_SECONDS = 300


class PaymentsError(FormarketError):
    """The payment provider did not do what was asked."""


class WebhookRefused(FormarketError):
    """A webhook that is not the provider's, or not now: nothing was changed."""


@dataclass(frozen=True, slots=True)
class Checkout:
    id: str
    url: str
    amount: Decimal
    currency: str


class Payments:
    """The provider, through one `stripe.StripeClient`."""

    def __init__(self, api_url: str, secret_key: str, webhook_secret: str) -> None:
        self.api_url = api_url
        self.webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_url},
            max_network_retries=0,
        )

    def checkout(
        self, account: AccountView, amount: Decimal, success_url: str, cancel_url: str
    ) -> Checkout:
        """A Checkout Session for a top-up of `amount` in the platform's currency."""
        check_amount(amount)
        try:
            session = self._client.v1.checkout.sessions.create(
                params={
                    "mode": "payment",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": PLATFORM_CURRENCY.lower(),
                                "unit_amount": int(amount * _MINOR),
                                "product_data": {"name": "formarket credit"},
                            },
                        }
                    ],
                    "client_reference_id": str(account.id),
                    "metadata": {"account": account.login},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        except stripe.StripeError as exc:
            raise PaymentsError(
                f"the payment provider refused the checkout: {exc.user_message or exc}",
                hint=f"check FORMARKET_PAYMENTS_KEY and that {self.api_url} answers",
            ) from exc
        if not session.url:
            raise PaymentsError("the payment provider gave the checkout no URL")
        return Checkout(session.id, session.url, amount, PLATFORM_CURRENCY)

    def event(self, payload: bytes, signature: str | None) -> stripe.Event:
        """The event a webhook carries, if its signature is the provider's and recent."""
        if not signature:
            raise WebhookRefused("the webhook carries no Stripe-Signature")
        try:
            event: stripe.Event = stripe.Webhook.construct_event(
                payload, signature, self.webhook_secret, tolerance=TOLERANCE_SECONDS
            )
            return event
        except stripe.SignatureVerificationError as exc:
            raise WebhookRefused(f"the webhook's signature does not verify: {exc}") from exc
        except (ValueError, AttributeError, TypeError) as exc:
            # Signed, but not an event object (the library reads it as one only after it
            # verified the signature): nothing to act on.
            raise WebhookRefused("the webhook's body is not an event") from exc

    def act(self, event: stripe.Event, credit: CreditStore) -> str:
        """Apply a verified event to the top-ups: what was done, in a word."""
        plain = event.to_dict()
        if plain.get("type") not in (
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.expired",
        ):
            return "ignored"
        data = plain.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        session_id = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 255:
            return "ignored"
        try:
            session = self._client.v1.checkout.sessions.retrieve(session_id)
        except stripe.StripeError as exc:
            # The provider delivers again later; nothing changed meanwhile.
            raise PaymentsError(f"cannot retrieve checkout session {session_id}: {exc}") from exc
        if session.payment_status == "paid" and session.amount_total is not None:
            amount = Decimal(session.amount_total) / _MINOR
            paid = credit.credit_topup(session.id, amount, session.currency or "")
            return "credited" if paid else "unchanged"
        if session.status == "expired":
            return "expired" if credit.expire_topup(session.id) else "unchanged"
        return "unchanged"


def payments_from_settings(environ: Mapping[str, str] | None = None) -> Payments | None:
    """The provider as the settings name it; None when no key is set (top-ups are off)."""
    key = PAYMENTS_KEY.read(environ)
    if not key:
        return None
    secret = PAYMENTS_WEBHOOK_SECRET.read(environ)
    if not secret:
        raise UsageError(
            f"{PAYMENTS_KEY.variable} is set but {PAYMENTS_WEBHOOK_SECRET.variable} is not",
            hint="without it no webhook can be verified, so no top-up could be credited",
        )
    url = PAYMENTS_URL.get(environ)
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{PAYMENTS_URL.variable} is not an http(s) URL")
    return Payments(url, key, secret)
