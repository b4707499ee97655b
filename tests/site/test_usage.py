"""Usage and earnings charts come from the committed usage logs and royalty statements."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

from formarket.site.catalog import Earning
from formarket.site.usage import earnings_from_statements, file_scan, file_totals, merge_totals
from formarket.usage.reader import reading_spec

from .conftest import Build, make_registry


def _event(
    n: int, month: str, outcome: str = "ok", *, agent: bool = True, **counts: int
) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "gateway/gw-1",
        "type": "dev.formarket.usage.call",
        "time": f"{month}-03T10:00:00Z",
        "subject": "dep-1",
        "datacontenttype": "application/json",
        "data": {
            "account": "acct-1",
            "agent": {"id": "tinyforge/faq-bot", "version": "1.0.0"} if agent else None,
            "model": {"id": "tinyforge/echo-chat", "version": "1.1.0"},
            "input_tokens": counts.get("input_tokens", 10),
            "output_tokens": counts.get("output_tokens", 5),
            "requests": counts.get("requests", 1),
            "duration_ms": 12,
            "outcome": outcome,
            "tokens_source": "measured",
        },
    }


def _usage_file(events: list[dict[str, object]]) -> bytes:
    return gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in events))


STATEMENT = {
    "format": "formarket.royalty-statement/1",
    "period": "2026-10",
    "publisher": "tinyforge",
    "currencies": [{"currency": "USD", "creator": "12.34", "gross": "20", "platform": "7.66"}],
}


PATH = "registry/usage/2026/11/30/gateway/gw-1-000001.jsonl.gz"
SPEC = reading_spec(None)


def test_file_totals_credit_ok_calls_as_a_close_does() -> None:
    raw = _usage_file(
        [
            _event(1, "2026-10"),
            _event(2, "2026-10", requests=2),
            _event(3, "2026-11"),
            _event(4, "2026-11", outcome="error"),
            # The agent's calls to its model: the model's own events.
            _event(5, "2026-10", agent=False),
            _event(6, "2026-11", agent=False, requests=3),
        ]
    ) + gzip.compress(b"not json\n")

    totals = merge_totals([file_totals(PATH, raw, SPEC)])

    assert [(m.month, m.requests) for m in totals["tinyforge/faq-bot"]] == [
        ("2026-10", 3),
        ("2026-11", 1),
    ]
    # The agent's own events credit the model nothing: it may have answered without it.
    assert [(m.month, m.requests) for m in totals["tinyforge/echo-chat"]] == [
        ("2026-10", 1),
        ("2026-11", 3),
    ]
    assert totals["tinyforge/faq-bot"][0].input_tokens == 20
    assert file_totals(PATH, b"\x1f\x8b broken", SPEC) == {}


def test_what_a_close_sets_aside_is_not_charted() -> None:
    later = _usage_file([_event(1, "2026-12")])  # after the file's day: from the future
    assert file_totals(PATH, later, SPEC) == {}
    elsewhere = _usage_file([_event(1, "2026-10")])
    assert file_totals(PATH.replace("gw-1-", "gw-2-"), elsewhere, SPEC) == {}  # not its source
    assert file_totals("registry/usage/2026/11/30/gw-1.jsonl.gz", elsewhere, SPEC) == {}
    scan = file_scan(PATH, later, SPEC)
    assert scan is not None
    assert [(a.code, a.line) for a in scan.set_aside] == [("USG007", 1)]


def test_earnings_are_the_creator_share_of_statements() -> None:
    other = json.dumps({"format": "formarket.royalty-summary/1"}).encode()

    found = earnings_from_statements([json.dumps(STATEMENT).encode(), other, b"{"])

    assert found == {"tinyforge": (Earning("2026-10", "USD", Decimal("12.34")),)}


def test_usage_and_earnings_are_charted(tmp_path: Path, build: Build) -> None:
    # The model's own events, and one of its agent's (which credits the agent alone).
    events = [_event(i, "2026-10", agent=False) for i in range(5)]
    events += [_event(9, "2026-11", agent=False, requests=7), _event(10, "2026-11")]
    root = make_registry(
        tmp_path / "market",
        {
            "registry/usage/2026/11/03/gateway/gw-1-000001.jsonl.gz": _usage_file(events),
            "royalties/2026-10/statements/tinyforge.json": json.dumps(STATEMENT).encode(),
        },
    )

    out = build(root).out

    listing = (out / "models/tinyforge/echo-chat/index.html").read_text()
    assert '<svg class="fm-chart"' in listing
    assert "2026-10: 5 requests; 2026-11: 7 requests" in listing
    publisher = (out / "publishers/tinyforge/index.html").read_text()
    assert publisher.count('<svg class="fm-chart"') == 2
    assert "2026-10: 12.34 USD" in publisher
    other = (out / "publishers/lumen-labs/index.html").read_text()
    assert "No usage recorded yet for this publisher" in other
    assert "No earnings recorded yet: none in the 1 closed royalty period(s)." in other
    home = (out / "index.html").read_text()
    popular = home.split('id="popular"')[1]
    assert "Echo Chat" in popular
    assert "FAQ Bot" in popular
