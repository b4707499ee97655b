"""The operator's close with invoices, and an account checking its own.

A real marketplace repository (the starter registry and a simulated month), a real accounts
database (SQLite) with a signed-in account that topped up during the month, and usage of
that account under its pseudonym: `formarket royalties close --commit` keeps its invoice,
commits the index of hashes, and reconciles its balance; the account recomputes its invoice
from the public usage, and any change to the file is caught.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from dulwich.refs import Ref
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.accounts.credit import CreditStore
from formarket.accounts.database import database_url, open_database
from formarket.accounts.invoices import InvoiceStore
from formarket.accounts.pseudonym import load_pseudonyms
from formarket.accounts.store import AccountStore
from formarket.cli import main
from formarket.control.invoicing import reconcile
from formarket.errors import InputError
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import commit_changes
from formarket.royalties import engine
from formarket.royalties.invoice_check import check_invoice
from formarket.schemas.invoices import Invoice, InvoiceIndex
from tests.royalties.helpers import BOT, simulate_month, starter
from tests.usage.helpers import call, gz, line, usage_file

PERIOD = "2026-03"
CHAT = ("northwind-ai/northwind-chat-8b", "1.2.0")


class Operator:
    def __init__(self, tmp_path: Path) -> None:
        self.market = tmp_path / "market"
        self.state = tmp_path / "gateway"
        self.state.mkdir()
        repo = Repo.init(str(self.market), mkdir=True)
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
        starter(repo)
        simulate_month(repo, PERIOD, calls=200)
        self.engine = open_database(database_url(self.state))
        self.pseudonyms = load_pseudonyms(self.state)
        self.accounts = AccountStore(self.engine)
        ada = self.accounts.sign_in("Ada-L", 7)
        march = CreditStore(self.engine, clock=lambda: datetime(2026, 3, 4, 9, tzinfo=UTC))
        march.open_topup(ada, "cs_test_1", Decimal("5"))
        assert march.credit_topup("cs_test_1", Decimal("5"), "usd")
        self.name = self.pseudonyms.of("Ada-L")
        events = []
        for i in range(7):
            event = call(
                f"ada-{i}", model=CHAT, time=f"2026-03-1{i}T08:00:00Z", source="gateway/gw-9"
            )
            event["data"]["account"] = self.name
            events.append(line(event))
        commit_changes(
            repo,
            "main",
            {usage_file("2026-03-19", "gateway/gw-9", 1): gz(events)},
            "Usage of Ada",
            BOT,
        )
        repo.close()
        self.store = InvoiceStore(self.engine, self.pseudonyms)

    def close(self) -> str:
        result = CliRunner().invoke(
            main,
            [
                "royalties",
                "close",
                "--period",
                PERIOD,
                "--repo",
                str(self.market),
                "--gateway-dir",
                str(self.state),
                "--commit",
            ],
        )
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
def operator(tmp_path: Path) -> Operator:
    return Operator(tmp_path)


def test_the_close_keeps_each_invoice_and_commits_only_their_hashes(operator: Operator) -> None:
    out = operator.close()
    assert "invoices in the accounts database" in out
    assert "balances reconciled with their latest invoice" in out
    body = operator.store.body("ada-l", PERIOD)  # logins ignore case
    assert body is not None
    invoice = Invoice.model_validate_json(body)
    assert invoice.account == operator.name
    lines = invoice.currencies[0].lines
    assert {(x.listing, x.metric) for x in lines} == {
        ("northwind-ai/northwind-chat-8b", "input_tokens"),
        ("northwind-ai/northwind-chat-8b", "output_tokens"),
    }
    assert sum(x.quantity for x in lines if x.metric == "input_tokens") == 700
    assert invoice.balance.top_ups == Decimal(5)
    assert [t.reference for t in invoice.top_ups] == ["cs_test_1"]
    # What git holds: the hashes and the totals, never the invoice, its top-ups or the login.
    repo = Repo(str(operator.market))
    tree = commit_tree(repo, branch_tip(repo, "main"))
    raw = read_path(repo, tree, f"royalties/{PERIOD}/invoices.json")
    assert raw is not None
    index = InvoiceIndex.model_validate_json(raw)
    summary = json.loads(read_path(repo, tree, f"royalties/{PERIOD}/summary.json") or b"")
    assert [(t.currency, str(t.amount)) for t in index.totals] == [
        (t["currency"], t["gross"]) for t in summary["totals"] if t["gross"] != "0.00"
    ]
    assert operator.store.periods("Ada-L")[0].sha256 in index.invoices
    assert b"cs_test_1" not in raw
    assert b"Ada-L" not in raw
    assert b"ada-l" not in raw
    # Reconciled: her balance in the database (the top-up: these calls were committed to git
    # without a gateway holding credit) against her invoice's closing balance.
    (mine,) = [
        r
        for r in reconcile(operator.accounts, operator.store, CreditStore(operator.engine))
        if r.login.lower() == "ada-l"
    ]
    assert (mine.period, mine.by_the_books) == (PERIOD, invoice.balance.closing)
    assert mine.in_the_database == Decimal(5)
    assert mine.difference == Decimal(5) - invoice.balance.closing
    # A third party's verify recomputes everything but the hashes, and agrees.
    assert engine.verify(repo, PERIOD) == []
    # The account checks its invoice from the public usage.
    checked = check_invoice(repo, PERIOD, body)
    assert checked.problems == ()
    repo.close()


def test_a_changed_invoice_is_caught(operator: Operator) -> None:
    operator.close()
    body = operator.store.body("Ada-L", PERIOD)
    assert body is not None
    repo = Repo(str(operator.market))
    # A larger top-up, the closing balance made to agree: the hash gives it away.
    doc = json.loads(body)
    doc["top_ups"][0]["amount"] = "50"
    doc["balance"]["top_ups"] = "50"
    doc["balance"]["closing"] = str(Decimal(doc["balance"]["closing"]) + 45)
    forged = (json.dumps(doc, indent=2) + "\n").encode()
    problems = check_invoice(repo, PERIOD, forged).problems
    assert any("is not among" in p for p in problems)
    # Fewer tokens billed: the recomputation from the public usage gives it away too.
    doc = json.loads(body)
    doc["currencies"][0]["lines"][0]["quantity"] -= 1
    forged = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    problems = check_invoice(repo, PERIOD, forged).problems
    assert any("differs from the invoice recomputed" in p for p in problems)
    with pytest.raises(InputError, match="not of 2026-04"):
        check_invoice(repo, "2026-04", body)
    repo.close()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_change_to_an_invoice_checks_out(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    operator = _closed(tmp_path_factory)
    body = operator.store.body("Ada-L", PERIOD)
    assert body is not None
    at = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[at]))
    changed = body[:at] + bytes([byte]) + body[at + 1 :]
    repo = Repo(str(operator.market))
    try:
        assert check_invoice(repo, PERIOD, changed).problems
    except InputError:
        pass  # not an invoice any more, or not of this period: refused with the reason
    finally:
        repo.close()


_CLOSED: list[Operator] = []


def _closed(factory: pytest.TempPathFactory) -> Operator:
    # One close for every example: the property changes the invoice, never the repository.
    if not _CLOSED:
        operator = Operator(factory.mktemp("closed"))
        operator.close()
        _CLOSED.append(operator)
    return _CLOSED[0]


def test_an_index_changed_after_the_close_fails_the_verify(operator: Operator) -> None:
    operator.close()
    repo = Repo(str(operator.market))
    tree = commit_tree(repo, branch_tip(repo, "main"))
    path = f"royalties/{PERIOD}/invoices.json"
    raw = read_path(repo, tree, path) or b""
    index = json.loads(raw)
    index["invoices"] = sorted([*index["invoices"], "f" * 64])
    commit_changes(repo, "main", {path: json.dumps(index).encode()}, "one more invoice", BOT)
    differences = engine.verify(repo, PERIOD)
    assert any(d.path == path for d in differences)
    repo.close()


def test_the_account_verifies_its_invoice_from_the_command_line(
    operator: Operator, tmp_path: Path
) -> None:
    operator.close()
    body = operator.store.body("Ada-L", PERIOD)
    assert body is not None
    mine = tmp_path / "invoice.json"
    mine.write_bytes(body)
    verify = ["invoices", "verify", PERIOD, str(mine), "--repo", str(operator.market)]
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 0, result.output
    assert f"the invoice of {operator.name} for {PERIOD} checks out" in result.output
    mine.write_bytes(body.replace(b'"opening":"0"', b'"opening":"1"', 1))
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 1
    assert "closing balance is not" in result.output or "is not among" in result.output


def test_the_next_invoice_opens_with_the_balance_this_one_closed_with(
    operator: Operator,
) -> None:
    operator.close()
    march = operator.store.body("Ada-L", PERIOD)
    assert march is not None
    closing = Invoice.model_validate_json(march).balance.closing
    assert closing != 0
    result = CliRunner().invoke(
        main,
        [
            "royalties",
            "close",
            "--period",
            "2026-04",
            "--repo",
            str(operator.market),
            "--gateway-dir",
            str(operator.state),
            "--commit",
        ],
    )
    assert result.exit_code == 0, result.output
    april = operator.store.body("Ada-L", "2026-04")
    assert april is not None  # no usage in April: the balance carried makes an invoice
    invoice = Invoice.model_validate_json(april)
    assert invoice.currencies == ()
    assert invoice.balance.opening == closing
    assert invoice.balance.closing == closing
    assert [s.period for s in operator.store.periods("Ada-L")] == ["2026-04", PERIOD]


def test_invoices_lost_after_the_close_are_kept_again_as_committed(operator: Operator) -> None:
    operator.close()
    before = operator.store.body("Ada-L", PERIOD)
    operator.store.save(PERIOD, [])  # the process stopped after the commit
    assert operator.store.body("Ada-L", PERIOD) is None
    reissue = [
        "royalties",
        "reissue-invoices",
        "--period",
        PERIOD,
        "--repo",
        str(operator.market),
        "--gateway-dir",
        str(operator.state),
    ]
    result = CliRunner().invoke(main, reissue)
    assert result.exit_code == 0, result.output
    assert "whose SHA-256 its close committed" in result.output
    assert operator.store.body("Ada-L", PERIOD) == before
    # A top-up of the period credited since: the invoices would differ, none is kept.
    ada = operator.accounts.account("Ada-L")
    assert ada is not None
    march = CreditStore(operator.engine, clock=lambda: datetime(2026, 3, 20, tzinfo=UTC))
    march.open_topup(ada, "cs_test_late", Decimal(1))
    assert march.credit_topup("cs_test_late", Decimal(1), "usd")
    operator.store.save(PERIOD, [])
    result = CliRunner().invoke(main, reissue)
    assert result.exit_code == 1
    assert "differ from" in result.output
    assert operator.store.body("Ada-L", PERIOD) is None


def test_a_file_too_large_to_be_an_invoice_is_not_read(operator: Operator, tmp_path: Path) -> None:
    huge = tmp_path / "invoice.json"
    with huge.open("wb") as out:
        out.truncate((256 << 20) + 1)  # sparse: nothing written to disk
    verify = ["invoices", "verify", PERIOD, str(huge), "--repo", str(operator.market)]
    result = CliRunner().invoke(main, verify)
    assert result.exit_code == 2
    assert "no invoice is that large" in result.output
