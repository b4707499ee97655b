"""Paying a closed period's payouts: one transfer per payout line through the payment provider
(the `stripe` library's Transfers API), each answer recorded in git by the bot.

    StripeTransfers(url, key)        the provider, as FORMARKET_PAYMENTS_URL and _KEY name it
    pay(repo, period, provider)      send what is due, record what the provider answered

The close decided what is paid and stays as it was; what the provider answered goes to
`royalties/transfers/YYYY-MM.json` beside it (`formarket.royalties.transfers` says which lines
are due, under which idempotency key, and `royalties verify` checks the record). A refusal
(insufficient funds on the platform's account, an unknown destination) is recorded with its
reason and tried again by the next run; anything else (the provider unreachable, a key it does
not take) stops the run, after the answers already had are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import stripe
from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.control.payments import PaymentsError
from formarket.errors import FormarketError, InputError, NotFoundError, UsageError
from formarket.market.governance import bot_at
from formarket.market.history import bot_problem
from formarket.market.layout import transfers_path
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import commit_changes
from formarket.royalties import engine, gitio
from formarket.royalties.close import dump_json
from formarket.royalties.sent import read_record
from formarket.royalties.transfers import Due, check, due, transfer_group
from formarket.schemas.transfers import TransferAttempt, Transfers
from formarket.schemas.usage import PayoutLine, Payouts
from formarket.settings import PAYMENTS_KEY, PAYMENTS_URL

__all__ = [
    "Answer",
    "PayReport",
    "Provider",
    "StripeTransfers",
    "closed_payouts",
    "pay",
    "transfers_from_settings",
]

_REASON_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Answer:
    """What the provider answered one transfer: its id, or why it refused."""

    reference: str | None = None
    reason: str | None = None


class Provider(Protocol):
    def sent(self, group: str) -> Mapping[str, str]:
        """Transfers of `group` the provider made, by the idempotency key they carry."""
        ...

    def transfer(self, item: Due, group: str) -> Answer:
        """Send `item`; an Answer for a transfer made or refused, PaymentsError otherwise."""
        ...


class StripeTransfers:
    """Transfers to connected accounts through one `stripe.StripeClient`."""

    def __init__(self, api_url: str, secret_key: str) -> None:
        self.api_url = api_url
        # The library retries a request that got no answer with the same idempotency key,
        # which the provider answers with the transfer it made, if it made one.
        self._client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_url}, max_network_retries=2
        )

    def sent(self, group: str) -> Mapping[str, str]:
        try:
            page = self._client.v1.transfers.list(params={"transfer_group": group, "limit": 100})
            return {
                t.metadata["idempotency_key"]: t.id
                for t in page.auto_paging_iter()
                if t.metadata and "idempotency_key" in t.metadata and not t.reversed
            }
        except stripe.StripeError as exc:
            raise self._failed("cannot list the transfers already made", exc) from exc

    def transfer(self, item: Due, group: str) -> Answer:
        try:
            made = self._client.v1.transfers.create(
                params={
                    "amount": item.minor,
                    "currency": item.currency.lower(),
                    "destination": item.destination,
                    "transfer_group": group,
                    "description": f"formarket royalties {item.period}",
                    "metadata": {
                        "period": item.period,
                        "publisher": item.publisher,
                        "attempt": str(item.attempt),
                        "idempotency_key": item.key,
                    },
                },
                options={"idempotency_key": item.key},
            )
        except stripe.IdempotencyError as exc:
            # The key was used with other parameters: the record and the provider disagree
            # about this attempt, which a person must look at before anything is sent.
            raise self._failed(f"attempt {item.key} is known with other terms", exc) from exc
        except stripe.InvalidRequestError as exc:
            # Read and refused (no funds, no such destination): tried again next run.
            code = f" ({exc.code})" if exc.code else ""
            reason = f"{exc.user_message or exc}{code}"
            return Answer(reason=" ".join(reason.split())[:_REASON_LIMIT])
        except stripe.StripeError as exc:
            raise self._failed(f"transfer {item.key} got no answer", exc) from exc
        return Answer(reference=made.id)

    def _failed(self, what: str, exc: stripe.StripeError) -> PaymentsError:
        return PaymentsError(
            f"the payment provider: {what}: {exc.user_message or exc}",
            hint=f"check FORMARKET_PAYMENTS_KEY and that {self.api_url} answers, then run"
            " `formarket royalties pay` again: nothing is sent twice",
        )


def transfers_from_settings(environ: Mapping[str, str] | None = None) -> StripeTransfers:
    """The provider as the settings that top-ups read name it (no webhook is needed)."""
    key = PAYMENTS_KEY.read(environ)
    if not key:
        raise UsageError(
            f"{PAYMENTS_KEY.variable} is not set: payouts are sent through the payment provider",
            hint=f"set {PAYMENTS_KEY.variable} (and {PAYMENTS_URL.variable} for a stand-in)",
        )
    url = PAYMENTS_URL.get(environ)
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{PAYMENTS_URL.variable} is not an http(s) URL")
    return StripeTransfers(url, key)


def closed_payouts(repo: BaseRepo, tip: ObjectID, period: str) -> tuple[ObjectID, Payouts]:
    """The commit that closed `period` and the payouts it committed (as it committed them: a
    later change to the folder changes nothing paid)."""
    history = gitio.history(repo, tip, gitio.cache_dir_of(repo))
    if period not in history.closes:
        raise NotFoundError(
            f"period {period} is not closed",
            hint=f"close it first: `formarket royalties close --period {period} --commit`",
        )
    position, folder = history.closes[period]
    closer = history.commits[position]
    if problem := bot_problem(repo, closer):
        raise FormarketError(
            f"royalties/{period}/ was committed by {closer.decode()[:12]}, {problem}",
            hint="only a close the bot committed is paid",
        )
    raw = read_path(repo, folder, "payouts.json")
    try:
        payouts = Payouts.model_validate_json(raw or b"")
    except ValidationError as exc:
        raise InputError(
            f"royalties/{period}/payouts.json is not a payouts file: {exc.error_count()}"
            " problem(s)",
            hint=f"see `formarket royalties verify --period {period}`",
        ) from exc
    return closer, payouts


@dataclass
class PayReport:
    period: str
    lines: tuple[PayoutLine, ...] = ()
    record: Transfers | None = None
    sent: list[TransferAttempt] = field(default_factory=list)
    refused: list[TransferAttempt] = field(default_factory=list)
    commit: ObjectID | None = None

    def latest(self, line: PayoutLine) -> TransferAttempt | None:
        """The last attempt recorded for a payout line."""
        attempts = self.record.attempts if self.record is not None else ()
        mine = [a for a in attempts if (a.publisher, a.currency) == (line.publisher, line.currency)]
        return mine[-1] if mine else None


def _now() -> datetime:
    return datetime.now(UTC)


def pay(
    repo: BaseRepo,
    period: str,
    provider: Provider,
    *,
    branch: str = "main",
    verify: bool = True,
    clock: Callable[[], datetime] = _now,
) -> PayReport:
    """Send the payouts of closed `period` that are due and commit what the provider
    answered, as the bot. With `verify`, the period must verify first (a close that does not
    is not paid). A PaymentsError that stops the run is raised after what was answered
    before it is committed."""
    engine.check_period(period)
    tip = branch_tip(repo, branch)
    closer, payouts = closed_payouts(repo, tip, period)
    if verify and (found := engine.verify(repo, period, branch=branch)):
        first = found[0]
        raise FormarketError(
            f"{period} does not verify, so nothing is sent: {first.path}: {first.problem}"
            f" ({len(found)} difference(s))",
            hint=f"see `formarket royalties verify --period {period}`",
        )
    record = read_record(repo, commit_tree(repo, tip), period)
    if record is not None and (problems := check(record, payouts)):
        raise InputError(
            f"{transfers_path(period)}: {problems[0]}",
            hint="the bot alone writes this file; restore it from git and see"
            f" `formarket royalties verify --period {period}`",
        )
    report = PayReport(period, payouts.lines, record)
    group = transfer_group(period)
    todo = due(payouts, record)
    made: list[TransferAttempt] = []
    stopped: PaymentsError | None = None
    try:
        known = provider.sent(group) if todo else {}
        for item in todo:
            reference = known.get(item.key)
            answer = Answer(reference=reference) if reference else provider.transfer(item, group)
            made.append(_attempt(item, answer, clock()))
    except PaymentsError as exc:
        stopped = exc
    if made:
        report.commit = _record(repo, branch, period, made, closer)
        report.record = read_record(repo, commit_tree(repo, branch_tip(repo, branch)), period)
    report.sent = [a for a in made if a.status == "sent"]
    report.refused = [a for a in made if a.status == "failed"]
    if stopped is not None:
        raise stopped
    return report


def _attempt(item: Due, answer: Answer, at: datetime) -> TransferAttempt:
    return TransferAttempt(
        publisher=item.publisher,
        currency=item.currency,
        amount=item.amount,
        destination=item.destination,
        attempt=item.attempt,
        idempotency_key=item.key,
        status="sent" if answer.reference else "failed",
        reference=answer.reference,
        reason=None if answer.reference else answer.reason or "refused",
        at=at,
    )


def _record(
    repo: BaseRepo, branch: str, period: str, made: list[TransferAttempt], closer: ObjectID
) -> ObjectID:
    """Commit `made` after the attempts the branch holds, as the bot; an attempt another run
    recorded meanwhile (the same key, so the provider's same answer) is not added twice."""
    path = transfers_path(period)

    def changes(current: ObjectID | None) -> dict[str, bytes | None]:
        tree = commit_tree(repo, current if current is not None else closer)
        now = read_record(repo, tree, period) or Transfers(period=period, attempts=())
        have = {a.idempotency_key for a in now.attempts}
        fresh = tuple(a for a in made if a.idempotency_key not in have)
        return {path: dump_json(now.model_copy(update={"attempts": (*now.attempts, *fresh)}))}

    sent = sum(1 for a in made if a.status == "sent")
    message = (
        f"Payouts of {period}: {sent} transfer(s) sent, {len(made) - sent} refused\n\n"
        f"Sent by `formarket royalties pay --period {period}`; what the payment provider"
        " answered to each payout line, checked by `formarket royalties verify`.\n"
    )
    return commit_changes(repo, branch, changes, message, bot_at(repo, branch_tip(repo, branch)))
