"""The dashboard's invoices: "My invoices", one page per period with its lines, top-ups,
charges and balance, and the download of the exact bytes whose hash the close committed; and
the hostile cases (no session, another account's period, periods that are none)."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

from tests.control.conftest import Plane
from tests.control.invoicing import PERIOD, close_month
from tests.control.test_dashboard import _get, _sign_in


def _cells(body: bytes) -> list[list[str]]:
    return [
        [
            re.sub(r"<[^>]+>|\s+", " ", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in body.decode().split("<tr>")[1:]
    ]


def test_a_user_sees_their_invoices_and_downloads_one(plane: Plane) -> None:
    plane.sign_in("alice")
    plane.sign_in("bob")
    close_month(plane.control, {"alice": 3, "bob": 1}, {"alice": Decimal("20.00")})
    alice = _sign_in(plane, "alice")

    home = _get(plane.url, "/dashboard", alice)
    assert b'href="/dashboard/invoices"' in home.body  # in the dashboard's tabs

    listed = _get(plane.url, "/dashboard/invoices", alice)
    assert listed.status == 200
    assert "default-src 'none'" in listed.headers["content-security-policy"]
    assert b"<script" not in listed.body
    row = next(r for r in _cells(listed.body) if r and r[0] == PERIOD)
    assert row[1:3] == ["2.40 USD", "17.60 USD"]
    assert f'href="/dashboard/invoices/{PERIOD}"'.encode() in listed.body

    shown = _get(plane.url, f"/dashboard/invoices/{PERIOD}", alice)
    assert shown.status == 200
    assert b"<script" not in shown.body
    cells = _cells(shown.body)
    assert [
        "northwind-ai/northwind-chat-8b",
        "1.2.0",
        "Input tokens",
        "3,000,000",
        "0.20 per million tokens",
        "0.60 USD",
    ] in cells
    assert [
        "northwind-ai/northwind-chat-8b",
        "1.2.0",
        "Output tokens",
        "3,000,000",
        "0.60 per million tokens",
        "1.80 USD",
    ] in cells
    assert ["Total", "2.40 USD"] in cells
    assert ["2026-03-05 12:00", *_top_up_reference(cells), "20.00 USD"] in cells
    for name, amount in (
        ("Opening balance", "0.00 USD"),
        ("Top-ups", "+ 20.00 USD"),
        ("Usage", "− 2.40 USD"),
        ("Charges", "− 0.00 USD"),
        ("Closing balance", "17.60 USD"),
    ):
        assert [name, amount] in cells, name
    assert b"No subscription charged" in shown.body

    downloaded = _get(plane.url, f"/dashboard/invoices/{PERIOD}/download", alice)
    assert downloaded.status == 200
    assert downloaded.body == plane.control.invoices.body("alice", PERIOD)
    assert downloaded.headers["content-type"] == "application/json"
    assert downloaded.headers["content-disposition"] == (
        f'attachment; filename="invoice-{PERIOD}.json"'
    )
    digest = hashlib.sha256(downloaded.body).hexdigest()
    assert f'id="sha256">{digest}<'.encode() in shown.body
    assert f'href="/dashboard/invoices/{PERIOD}/download"'.encode() in shown.body


def _top_up_reference(cells: list[list[str]]) -> list[str]:
    return [next(c[1] for c in cells if len(c) == 3 and c[1].startswith("cs_test_"))]


def test_a_user_without_invoices_is_told_when_they_come(plane: Plane) -> None:
    page = _get(plane.url, "/dashboard/invoices", _sign_in(plane, "carol"))
    assert page.status == 200
    assert b"No invoice yet" in page.body


def test_without_a_session_no_invoice_is_shown(plane: Plane) -> None:
    plane.sign_in("alice")
    close_month(plane.control, {"alice": 1})
    for path in (
        "/dashboard/invoices",
        f"/dashboard/invoices/{PERIOD}",
        f"/dashboard/invoices/{PERIOD}/download",
    ):
        for cookie in ("", "fmk_session=made-up"):
            page = _get(plane.url, path, cookie)
            assert b"Sign in with GitHub" in page.body, path
            assert b"formarket.invoice" not in page.body
            assert PERIOD.encode() not in page.body


HOSTILE = [
    PERIOD,  # Bob's: Carol has no invoice of it
    "2026-04",
    "2026-13",
    "2026-3",
    "..%2F..%2Fetc%2Fpasswd",
    "..%2Fapi.py",
    "2026-03%00",
    "2026-03%0A",
    "%3Cscript%3E",
    "x" * 3000,
]


def test_no_other_period_serves_an_invoice(plane: Plane) -> None:
    plane.sign_in("bob")
    close_month(plane.control, {"bob": 1})
    carol = _sign_in(plane, "carol")
    for period in HOSTILE:
        for path in (f"/dashboard/invoices/{period}", f"/dashboard/invoices/{period}/download"):
            page = _get(plane.url, path, carol)
            assert page.status == 404, (path, page.status)
            assert b"formarket.invoice" not in page.body
            assert b"<script>" not in page.body
