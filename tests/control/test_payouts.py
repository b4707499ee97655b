"""Creator payouts as transfers through the payment provider's stand-in, with the `stripe`
library: one transfer per payout line the close paid, recorded in git by the bot beside the
closed period; refusals recorded and tried again; nothing ever paid twice; a record edited by
hand fails `royalties verify`."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
from click.testing import CliRunner
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo, Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.cli import main
from formarket.control.earnings import statements_of
from formarket.control.payments import PaymentsError
from formarket.control.payouts import (
    Answer,
    StripeTransfers,
    closed_payouts,
    pay,
    transfers_from_settings,
)
from formarket.errors import FormarketError, InputError, NotFoundError, UsageError
from formarket.gateway.server import ServerThread
from formarket.market.layout import transfers_path
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import commit_changes
from formarket.royalties import engine
from formarket.royalties.transfers import Due, transfer_group
from formarket.schemas.transfers import Transfers
from formarket.standins.payments import PaymentsStandIn
from tests.gateway.helpers import Client
from tests.royalties.helpers import BOT, MAINTAINER, memory_market, simulate_month, starter

SECRET_KEY = "sk_test_formarket"
PERIOD = "2026-04"
# Two publishers paid through the provider in April, in two currencies.
NORTHWIND = "acct_1PnW7d2eNwAiRtdm"
LUMEN = "acct_lumenlabs0117"
PLENTY = {"usd": 10_000_000, "eur": 10_000_000}

_branches = itertools.count()


@cache
def _closed() -> tuple[MemoryRepo, ObjectID]:
    """March and April closed by the bot; April pays northwind-ai (USD) and lumen-labs (EUR),
    both by stripe-connect."""
    repo = memory_market()
    path = "registry/publishers/lumen-labs.yaml"
    raw = read_path(repo, commit_tree(repo, branch_tip(repo, "main")), path)
    assert raw is not None
    connected = raw.replace(b"method: bank-transfer", b"method: stripe-connect").replace(
        b"LUMEN-LABS-PAYEE-0117", LUMEN.encode()
    )
    commit_changes(repo, "main", {path: connected}, "Lumen Labs is paid by Stripe", MAINTAINER)
    simulate_month(repo, "2026-03")  # type: ignore[arg-type]
    engine.close(repo, "2026-03", commit=True, now=datetime(2026, 4, 5, tzinfo=UTC))
    simulate_month(repo, PERIOD)  # type: ignore[arg-type]
    engine.close(repo, PERIOD, commit=True, now=datetime(2026, 5, 5, tzinfo=UTC))
    return repo, branch_tip(repo, "main")


def _branch() -> tuple[MemoryRepo, str]:
    """A branch of its own at the closed market's tip: tests share the repository."""
    repo, tip = _closed()
    name = f"pay-{next(_branches)}"
    repo.refs[Ref(f"refs/heads/{name}".encode())] = tip
    return repo, name


def _paid_lines() -> dict[tuple[str, str], Decimal]:
    repo, tip = _closed()
    _, payouts = closed_payouts(repo, tip, PERIOD)
    return {
        (line.publisher, line.currency): line.paid
        for line in payouts.lines
        if line.method == "stripe-connect" and line.status == "paid"
    }


def _record(repo: MemoryRepo, branch: str) -> Transfers | None:
    raw = read_path(repo, commit_tree(repo, branch_tip(repo, branch)), transfers_path(PERIOD))
    return Transfers.model_validate_json(raw) if raw is not None else None


@dataclass
class Bank:
    provider: PaymentsStandIn
    url: str

    @property
    def client(self) -> StripeTransfers:
        return StripeTransfers(self.url, SECRET_KEY)

    def made(self) -> dict[tuple[str, str], list[dict[str, object]]]:
        """The provider's transfers, by (publisher, currency)."""
        out: dict[tuple[str, str], list[dict[str, object]]] = {}
        for t in self.provider.transfers.values():
            meta = t["metadata"]
            out.setdefault((meta["publisher"], str(t["currency"]).upper()), []).append(t)
        return out


def _provider() -> PaymentsStandIn:
    return PaymentsStandIn(
        SECRET_KEY, "whsec_formarket", accounts={NORTHWIND, LUMEN}, balance=dict(PLENTY)
    )


class _Switch:
    """Serves whichever stand-in the test holds now: a new provider per hypothesis example
    without a new server."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.bank.provider(scope, receive, send)


@pytest.fixture
def bank() -> Iterator[Bank]:
    made = Bank(_provider(), "")
    with ServerThread(_Switch(made)) as server:
        made.url = server.url
        yield made


def test_the_closed_market_pays_two_lines_through_the_provider() -> None:
    assert set(_paid_lines()) == {("northwind-ai", "USD"), ("lumen-labs", "EUR")}


def test_each_paid_line_becomes_one_transfer_recorded_by_the_bot(bank: Bank) -> None:
    repo, branch = _branch()
    report = pay(repo, PERIOD, bank.client, branch=branch)
    assert report.commit is not None
    assert not report.refused
    made = bank.made()
    for (publisher, currency), paid in _paid_lines().items():
        [transfer] = made[(publisher, currency)]
        units = 100  # USD and EUR have cents
        assert transfer["amount"] == int(paid * units)
        assert transfer["destination"] == (NORTHWIND if publisher == "northwind-ai" else LUMEN)
        assert transfer["transfer_group"] == transfer_group(PERIOD)
    record = _record(repo, branch)
    assert record is not None
    assert {(a.publisher, a.reference) for a in record.attempts} == {
        (t["metadata"]["publisher"], t["id"])  # type: ignore[index]
        for t in bank.provider.transfers.values()
    }
    commit = repo.object_store[branch_tip(repo, branch)]
    assert commit.author == BOT.raw()  # type: ignore[attr-defined]
    # The closed period is as it was: it verifies, with its transfers beside it.
    assert engine.verify(repo, PERIOD, branch=branch) == []
    # Each line is shown with its reference.
    assert report.record is not None
    for line in report.lines:
        last = report.latest(line)
        if (line.publisher, line.currency) in _paid_lines():
            assert last is not None
            assert last.reference in bank.provider.transfers
        else:
            assert last is None

    again = pay(repo, PERIOD, bank.client, branch=branch)
    assert again.commit is None
    assert not again.sent
    assert len(bank.provider.transfers) == 2


def test_a_refused_transfer_is_recorded_with_its_reason_and_tried_again(bank: Bank) -> None:
    repo, branch = _branch()
    bank.provider.balance["eur"] = 0  # the platform has no euros
    bank.provider.accounts.discard(NORTHWIND)  # nor does the provider know northwind's account
    report = pay(repo, PERIOD, bank.client, branch=branch)
    assert not report.sent
    assert len(report.refused) == 2
    reasons = {a.publisher: a.reason or "" for a in report.refused}
    assert "balance_insufficient" in reasons["lumen-labs"]
    assert "No such destination" in reasons["northwind-ai"]
    assert not bank.provider.transfers
    assert engine.verify(repo, PERIOD, branch=branch) == []

    # Still no euros: the second try is refused too, under its own key.
    bank.provider.accounts.add(NORTHWIND)
    second = pay(repo, PERIOD, bank.client, branch=branch, verify=False)
    assert [a.publisher for a in second.sent] == ["northwind-ai"]
    assert [(a.publisher, a.attempt) for a in second.refused] == [("lumen-labs", 2)]

    bank.provider.balance["eur"] = PLENTY["eur"]
    third = pay(repo, PERIOD, bank.client, branch=branch, verify=False)
    assert [(a.publisher, a.attempt) for a in third.sent] == [("lumen-labs", 3)]
    assert {k: len(v) for k, v in bank.made().items()} == {
        ("northwind-ai", "USD"): 1,
        ("lumen-labs", "EUR"): 1,
    }
    record = _record(repo, branch)
    assert record is not None
    assert [(a.publisher, a.attempt, a.status) for a in record.attempts] == [
        ("lumen-labs", 1, "failed"),
        ("northwind-ai", 1, "failed"),
        ("lumen-labs", 2, "failed"),
        ("northwind-ai", 2, "sent"),
        ("lumen-labs", 3, "sent"),
    ]
    assert engine.verify(repo, PERIOD, branch=branch) == []
    assert pay(repo, PERIOD, bank.client, branch=branch, verify=False).commit is None


class _Forgetful:
    """A provider whose list of transfers made shows nothing (as when the transfer group is
    not searchable): only the idempotency key stands between a retry and a second payment."""

    def __init__(self, inner: StripeTransfers) -> None:
        self.inner = inner

    def sent(self, group: str) -> Mapping[str, str]:
        return {}

    def transfer(self, item: Due, group: str) -> Answer:
        return self.inner.transfer(item, group)


class _DiesAfter:
    """A provider reached, whose run dies after `sends` transfers, before recording them."""

    def __init__(self, inner: object, sends: int) -> None:
        self.inner = inner
        self.left = sends

    def sent(self, group: str) -> Mapping[str, str]:
        return self.inner.sent(group)  # type: ignore[attr-defined, no-any-return]

    def transfer(self, item: Due, group: str) -> Answer:
        if self.left == 0:
            raise KeyboardInterrupt  # the process is gone: nothing after this runs
        self.left -= 1
        answer: Answer = self.inner.transfer(item, group)  # type: ignore[attr-defined]
        return answer


@pytest.mark.parametrize("forgetful", [False, True])
def test_a_run_that_dies_before_recording_never_pays_twice(bank: Bank, forgetful: bool) -> None:
    repo, branch = _branch()
    client = _Forgetful(bank.client) if forgetful else bank.client
    with pytest.raises(KeyboardInterrupt):
        pay(repo, PERIOD, _DiesAfter(client, 1), branch=branch, verify=False)
    assert _record(repo, branch) is None
    assert len(bank.provider.transfers) == 1
    report = pay(repo, PERIOD, client, branch=branch, verify=False)
    assert len(report.sent) == 2
    assert len(bank.provider.transfers) == 2
    record = _record(repo, branch)
    assert record is not None
    assert {a.reference for a in record.attempts} == set(bank.provider.transfers)


def test_a_provider_that_does_not_answer_stops_the_run_after_recording_what_it_had(
    bank: Bank,
) -> None:
    repo, branch = _branch()
    wrong = StripeTransfers(bank.url, "sk_test_not_the_key")
    with pytest.raises(PaymentsError):
        pay(repo, PERIOD, wrong, branch=branch, verify=False)
    assert _record(repo, branch) is None
    assert not bank.provider.transfers


def _edit(repo: MemoryRepo, branch: str, edit: dict[str, object], who: object = BOT) -> None:
    path = transfers_path(PERIOD)
    raw = read_path(repo, commit_tree(repo, branch_tip(repo, branch)), path)
    assert raw is not None
    document = json.loads(raw)
    document["attempts"][0].update(edit)
    data = (json.dumps(document, indent=2) + "\n").encode()
    commit_changes(repo, branch, {path: data}, "edit", who)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("edit", "who", "expected"),
    [
        ({"amount": "99999.00"}, BOT, "amount 99999.00"),
        ({"destination": "acct_elsewhere"}, BOT, "destination acct_elsewhere"),
        ({"reference": "tr_madeup"}, BOT, "did not only add"),
        ({"publisher": "openhearth"}, BOT, "sent no payout"),
        ({}, MAINTAINER, "only the bot records transfers"),
        ({"amount": 1.5}, BOT, "attempts.0.amount"),
    ],
)
def test_a_transfers_file_edited_by_hand_fails_verify(
    bank: Bank, edit: dict[str, object], who: object, expected: str
) -> None:
    repo, branch = _branch()
    pay(repo, PERIOD, bank.client, branch=branch)
    _edit(repo, branch, {"at": "2026-05-06T00:00:00Z", **edit}, who)
    found = engine.verify(repo, PERIOD, branch=branch)
    assert found, "an edited record must not verify"
    assert {d.path for d in found} == {transfers_path(PERIOD)}
    assert any(expected in d.problem for d in found), found
    # Nothing is sent from a record that does not verify.
    with pytest.raises(FormarketError):
        pay(repo, PERIOD, bank.client, branch=branch)
    assert len(bank.provider.transfers) == 2


def test_a_record_with_a_sent_line_removed_is_refused_before_anything_is_sent(
    bank: Bank,
) -> None:
    repo, branch = _branch()
    pay(repo, PERIOD, bank.client, branch=branch)
    path = transfers_path(PERIOD)
    record = _record(repo, branch)
    assert record is not None
    shorter = record.model_copy(update={"attempts": record.attempts[1:]})
    commit_changes(repo, branch, {path: shorter.model_dump_json().encode()}, "drop", BOT)
    found = engine.verify(repo, PERIOD, branch=branch)
    assert any("did not only add" in d.problem for d in found)
    # Even unverified, the lookup of the provider's transfers keeps it from paying twice.
    pay(repo, PERIOD, bank.client, branch=branch, verify=False)
    assert len(bank.provider.transfers) == 2


def test_paying_needs_a_closed_period_and_a_provider() -> None:
    repo, branch = _branch()
    with pytest.raises(NotFoundError):
        pay(repo, "2026-05", _Forgetful(StripeTransfers("http://127.0.0.1:9", "k")), branch=branch)
    with pytest.raises(UsageError):
        pay(repo, "2026-13", _Forgetful(StripeTransfers("http://127.0.0.1:9", "k")), branch=branch)
    with pytest.raises(UsageError):
        transfers_from_settings({})
    with pytest.raises(InputError):
        transfers_from_settings(
            {"FORMARKET_PAYMENTS_KEY": "k", "FORMARKET_PAYMENTS_URL": "ftp://x"}
        )
    made = transfers_from_settings(
        {"FORMARKET_PAYMENTS_KEY": "k", "FORMARKET_PAYMENTS_URL": "http://127.0.0.1:9"}
    )
    assert made.api_url == "http://127.0.0.1:9"


_RUN = st.fixed_dictionaries(
    {
        "usd": st.sampled_from([0, 10_000_000]),
        "eur": st.sampled_from([0, 10_000_000]),
        "northwind": st.booleans(),
        "lumen": st.booleans(),
        "dies_after": st.none() | st.integers(0, 1),
        "forgetful": st.booleans(),
    }
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=st.lists(_RUN, min_size=1, max_size=5))
def test_retries_and_partial_failures_pay_each_line_exactly_once(
    bank: Bank, runs: list[dict[str, object]]
) -> None:
    repo, branch = _branch()
    # A new branch starts its record from nothing: a provider of its own, too.
    bank.provider = _provider()
    lines = _paid_lines()
    # Then the provider takes everything, twice: a refusal a dead run never recorded is its
    # key's answer still, recorded by the first of these, and the second tries again.
    fine = {"usd": 10**7, "eur": 10**7, "northwind": True, "lumen": True}
    for run in [*runs, fine, fine]:
        bank.provider.balance = {"usd": int(run["usd"]), "eur": int(run["eur"])}  # type: ignore[call-overload]
        bank.provider.accounts = {
            a for a, on in ((NORTHWIND, run["northwind"]), (LUMEN, run["lumen"])) if on
        }
        client: object = _Forgetful(bank.client) if run.get("forgetful") else bank.client
        dies = run.get("dies_after")
        if dies is not None:
            client = _DiesAfter(client, int(dies))  # type: ignore[call-overload]
        with contextlib.suppress(KeyboardInterrupt):
            pay(repo, PERIOD, client, branch=branch, verify=False)  # type: ignore[arg-type]
        # Never more than one transfer per line, whatever happened.
        assert all(len(v) <= 1 for v in bank.made().values())
    made = bank.made()
    assert {k: len(v) for k, v in made.items()} == dict.fromkeys(lines, 1)
    for key, paid in lines.items():
        assert made[key][0]["amount"] == int(paid * 100)
    record = _record(repo, branch)
    assert record is not None
    sent = {(a.publisher, a.currency): a.reference for a in record.attempts if a.status == "sent"}
    assert sent == {k: v[0]["id"] for k, v in made.items()}
    assert engine.verify(repo, PERIOD, branch=branch) == []
    assert pay(repo, PERIOD, bank.client, branch=branch, verify=False).commit is None


def _due(amount: str = "10.00", attempt: int = 1) -> Due:
    return Due(PERIOD, "northwind-ai", "USD", Decimal(amount), NORTHWIND, attempt)


def test_the_stand_in_answers_a_key_once_and_refuses_it_with_other_terms(bank: Bank) -> None:
    first = bank.client.transfer(_due(), "g")
    assert first.reference is not None
    assert bank.client.transfer(_due(), "g") == first  # a retry: the same transfer
    assert len(bank.provider.transfers) == 1
    with pytest.raises(PaymentsError, match="other terms"):
        bank.client.transfer(_due("11.00"), "g")
    # A refusal is the key's answer too, even once the funds are there.
    bank.provider.balance["usd"] = 0
    refused = bank.client.transfer(_due(attempt=2), "g")
    assert refused.reason is not None
    assert "balance_insufficient" in refused.reason
    bank.provider.balance["usd"] = PLENTY["usd"]
    assert bank.client.transfer(_due(attempt=2), "g") == refused
    assert bank.client.transfer(_due(attempt=3), "g").reference is not None
    assert dict(bank.client.sent("g")) == {
        str(t["metadata"]["idempotency_key"]): str(t["id"])  # type: ignore[index]
        for t in bank.provider.transfers.values()
    }
    assert bank.client.sent("another group") == {}
    with pytest.raises(PaymentsError):
        StripeTransfers(bank.url, "sk_test_wrong").sent("g")


def test_what_payers_pay_at_checkout_is_the_platforms_to_transfer(bank: Bank) -> None:
    bank.provider.balance = {}
    client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": bank.url})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2500,
                        "product_data": {"name": "formarket credit"},
                    },
                }
            ],
            "success_url": "http://127.0.0.1/ok",
        }
    )
    assert bank.client.transfer(_due("20.00"), "g").reason is not None
    bank.provider.pay(session.id)
    assert bank.client.transfer(_due("20.00", 2), "g").reference is not None
    assert bank.provider.balance == {"usd": 500}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.dictionaries(
        st.sampled_from(["amount", "currency", "destination", "metadata", "transfer_group"]),
        st.text(max_size=20) | st.integers(-(10**12), 10**12).map(str),
    )
)
def test_no_transfer_request_breaks_the_stand_in_or_moves_money(
    bank: Bank, params: dict[str, str]
) -> None:
    before = dict(bank.provider.balance)
    reply = Client(bank.url).request(
        "POST",
        "/v1/transfers",
        raw=urlencode(params).encode(),
        headers={
            "Authorization": f"Bearer {SECRET_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert reply.status in (200, 400), reply.body
    if reply.status == 400:
        assert bank.provider.balance == before
    else:
        moved = sum(before.values()) - sum(bank.provider.balance.values())
        assert moved == int(params["amount"]) > 0


def test_the_command_line_pays_a_period_and_shows_each_line_with_its_transfer(
    bank: Bank, tmp_path: Path
) -> None:
    path = tmp_path / "market"
    repo = Repo.init(str(path), mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    starter(repo)
    simulate_month(repo, "2026-03")
    simulate_month(repo, PERIOD)
    repo.close()
    env = {"FORMARKET_PAYMENTS_URL": bank.url, "FORMARKET_PAYMENTS_KEY": SECRET_KEY}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["royalties", *args, "--repo", str(path)], env=env)
        return result.exit_code, result.output

    code, out = run("pay", "--period", PERIOD)
    assert code == 1
    assert "is not closed" in out
    assert "hint:" in out
    for period in ("2026-03", PERIOD):
        assert run("close", "--period", period, "--commit")[0] == 0
    bank.provider.balance["usd"] = 0
    code, out = run("pay", "--period", PERIOD)
    assert code == 1, out
    assert "northwind-ai USD" in out
    assert "refused (try 1)" in out
    assert "balance_insufficient" in out
    assert "paid by bank-transfer outside the provider" in out
    bank.provider.balance["usd"] = PLENTY["usd"]
    code, out = run("pay", "--period", PERIOD)
    assert code == 0, out
    [transfer] = bank.provider.transfers
    assert f"sent to {NORTHWIND} as {transfer}" in out
    code, out = run("pay", "--period", PERIOD)
    assert code == 0, out
    assert "nothing to send" in out
    code, shown = run("payouts", "--period", PERIOD)
    assert code == 0, shown
    assert f"as {transfer}" in shown
    assert run("verify", "--all")[0] == 0
    assert len(bank.provider.transfers) == 1


def test_a_creators_payouts_are_shown_with_the_providers_reference(bank: Bank) -> None:
    repo, branch = _branch()

    def shown() -> dict[str, str | None]:
        april = list(statements_of(repo, branch, ["northwind-ai", "lumen-labs"]))
        return {
            line.publisher: line.reference
            for s in april
            if s.period == PERIOD
            for line in s.payouts
            if line.status == "paid"
        }

    assert shown() == {"northwind-ai": "not sent yet", "lumen-labs": "not sent yet"}
    bank.provider.balance["eur"] = 0
    pay(repo, PERIOD, bank.client, branch=branch, verify=False)
    now = shown()
    [sent] = bank.provider.transfers
    assert now["northwind-ai"] == sent
    assert "balance_insufficient" in (now["lumen-labs"] or "")
    assert "refused" in (now["lumen-labs"] or "")


class _Overtaken:
    """A provider during whose first transfer another run of `pay` sends and records
    everything: two operators paying the same period at once."""

    def __init__(self, inner: StripeTransfers, other: Callable[[], object]) -> None:
        self.inner = inner
        self.other: Callable[[], object] | None = other

    def sent(self, group: str) -> Mapping[str, str]:
        return {}  # as it was before the other run sent anything

    def transfer(self, item: Due, group: str) -> Answer:
        if self.other is not None:
            other, self.other = self.other, None
            other()
        return self.inner.transfer(item, group)


def test_two_runs_at_once_pay_once_and_record_each_try_once(bank: Bank) -> None:
    repo, branch = _branch()
    bank.provider.balance["eur"] = 0

    def other() -> object:
        return pay(repo, PERIOD, bank.client, branch=branch, verify=False)

    pay(repo, PERIOD, _Overtaken(bank.client, other), branch=branch, verify=False)
    assert len(bank.provider.transfers) == 1
    record = _record(repo, branch)
    assert record is not None
    assert [(a.publisher, a.attempt, a.status) for a in record.attempts] == [
        ("lumen-labs", 1, "failed"),
        ("northwind-ai", 1, "sent"),
    ]
    assert engine.verify(repo, PERIOD, branch=branch) == []


def test_a_record_of_transfers_for_a_period_never_closed_fails_verify_all(bank: Bank) -> None:
    repo, branch = _branch()
    pay(repo, PERIOD, bank.client, branch=branch, verify=False)
    record = _record(repo, branch)
    assert record is not None
    stray = record.model_copy(update={"period": "2026-05"})
    path = "royalties/transfers/2026-05.json"
    commit_changes(repo, branch, {path: stray.model_dump_json().encode()}, "stray", BOT)
    found = engine.verify_all(repo, branch=branch)
    assert found[PERIOD] == []
    assert [d.path for d in found["2026-05"]] == [path]
