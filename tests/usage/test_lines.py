"""The C reader of the collectors' lines (formarket.usage.lines) never reads a line otherwise
than msgspec decodes it: over random files, written as the collectors write them and then
damaged byte by byte or field by field (spaces, escapes, other field orders, other forms of
times and numbers, blank lines, duplicate keys, bytes outside ASCII), `read_columns` either
declines the file or gives, field by field, the values msgspec decodes from it; and a whole
file taken through it (`take_line_columns`) gives the very scan the msgspec path gives, or
declines and leaves the scan as it was. A clean file in the collectors' form is never
declined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from formarket.usage.columns import take_columns, take_line_columns
from formarket.usage.lines import BUILT, LineColumns, read_columns, ref_of
from formarket.usage.reader import ScanSpec
from formarket.usage.scan import FileScan
from formarket.usage.wire import DECODER, WireEvent, canonical_json
from tests.usage.helpers import call
from tests.usage.test_columns import CHAT, FILE, NEW, OLD, _state, files

pytestmark = pytest.mark.skipif(not BUILT, reason="the C reader was not built")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Damage to a line as text: each makes a line msgspec may still accept, or not.
_EDITS: list[tuple[bytes, bytes]] = [
    (b'"id":"', b'"id": "'),
    (b'{"specversion"', b' {"specversion"'),
    (b'"source":"', b'"source":"\\u0067'),
    (b'"account":"', b'"account":"\xc3\xa9'),
    (b'"account":"', b'"account":"\\"'),
    (b'"subject":"', b'"subject":"\t'),
    (b'Z"', b'+00:00"'),
    (b'Z"', b'z"'),
    (b':00Z"', b':00.5Z"'),
    (b':00Z"', b':00.123Z"'),
    (b':00Z"', b':00.123456Z"'),
    (b':00Z"', b':00.123456789Z"'),
    (b"2026-03-", b"2026-02-3"),
    (b"T", b" "),
    (b'"requests":1', b'"requests":1.0'),
    (b'"requests":1', b'"requests":01'),
    (b'"requests":0', b'"requests":-0'),
    (b'"input_tokens":', b'"input_tokens":1e3,"x":'),
    (b'"outcome":"ok"', b'"outcome":"OK"'),
    (b',"instance_seconds":0', b""),
    (b',"instance_seconds":0', b',"instance_seconds":0,"cut":null'),
    (b',"instance_seconds":0', b',"instance_seconds":0,"cut":"budget","parent":"e-1"'),
    (b',"instance_seconds":0', b',"instance_seconds":0,"parent":null'),
    (b',"instance_seconds":0', b',"instance_seconds":0,"cut":"nope"'),
    (b',"instance_seconds":0', b',"instance_seconds":0,"parent":""'),
    (b'"data":{"account"', b'"data":{"account":"x","account"'),
    (b'"model":null', b'"model":{"version":"1.0.0","id":"acme/chat"}'),
    (b'"type":"dev.formarket.usage.call"', b'"type":"dev.formarket.usage.Call"'),
    (b"}}", b"} }"),
    (b"}}", b"}}\r"),
    (b"}}", b"}},"),
    (b'"specversion":"1.0"', b'"specversion":"1.1"'),
]


@st.composite
def raw_files(draw: st.DrawFn) -> bytes:
    """A file as the collectors write it, perhaps damaged."""
    events = draw(files())
    lines = [canonical_json(e) for e in events]
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["edit", "byte", "blank", "cut"]))
        if how == "edit":
            old, new = draw(st.sampled_from(_EDITS))
            lines[at] = lines[at].replace(old, new, 1)
        elif how == "byte" and lines[at]:
            position = draw(st.integers(0, len(lines[at]) - 1))
            byte = draw(st.sampled_from(b' "\\{}:,0aZ\x00\x7f\xff\n'))
            lines[at] = lines[at][:position] + bytes([byte]) + lines[at][position + 1 :]
        elif how == "blank":
            lines.insert(at, b"")
        else:
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
    raw = b"\n".join(lines)
    return raw if draw(st.booleans()) or not raw else raw + b"\n"


def _as_decoded(read: LineColumns, events: list[WireEvent]) -> None:
    """Every column of `read` holds what msgspec decoded into `events`."""
    assert read.count == len(events)
    micros = [(e.time - _EPOCH) // timedelta(microseconds=1) for e in events]
    assert read.micros.tolist() == micros
    assert all(e.time.utcoffset() == timedelta(0) for e in events)
    datas = [e.data for e in events]
    assert read.requests.tolist() == [d.requests for d in datas]
    assert read.inputs.tolist() == [d.input_tokens for d in datas]
    assert read.outputs.tolist() == [d.output_tokens for d in datas]
    assert read.seconds.tolist() == [d.instance_seconds for d in datas]
    assert read.calls.tolist() == [e.type == "dev.formarket.usage.call" for e in events]
    assert read.oks.tolist() == [d.outcome == "ok" for d in datas]
    assert read.ids_joined == "".join(e.id + "\n" for e in events).encode()
    ids = [
        bytes(row.tobytes()[:length])
        for row, length in zip(read.id_words, read.id_lengths, strict=True)
    ]
    assert ids == [e.id.encode() for e in events]
    assert [read.sources[c] for c in read.source_codes] == [e.source for e in events]
    assert read.subjects_joined == "".join(e.subject + "\n" for e in events).encode()
    if read.accounts_joined is None:
        assert [read.accounts[c] for c in read.account_codes] == [d.account for d in datas]
    else:
        assert read.accounts_joined == "".join(d.account + "\n" for d in datas).encode()
        assert not read.accounts
    refs = [*map(ref_of, read.refs), None]
    assert [refs[c] for c in read.agent_codes] == [d.agent for d in datas]
    assert [refs[c] for c in read.model_codes] == [d.model for d in datas]
    assert [read.tokens[c] for c in read.token_codes] == [d.tokens_source for d in datas]
    parents = [*read.parents, None]
    assert [parents[c] for c in read.parent_codes] == [
        d.parent if isinstance(d.parent, str) else None for d in datas
    ]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_files(), st.booleans())
def test_the_reader_reads_what_msgspec_decodes_or_declines(raw: bytes, payers: bool) -> None:
    read = read_columns(raw, payers=payers)
    if read is None:
        return
    events = DECODER.decode_lines(raw)  # every line an event: msgspec must agree
    assert raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1) == len(events)
    _as_decoded(read, events)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_files(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**63 - 1))
def test_a_file_taken_through_the_reader_is_scanned_as_msgspec_scans_it(
    raw: bytes, old: bool, by_day: bool, by_account: bool, seed: int
) -> None:
    spec = ScanSpec(NEW, OLD if old else None, seed, by_day=by_day, by_account=by_account)
    read = read_columns(raw, payers=by_account)
    scan = FileScan(3)
    if read is None or not take_line_columns(scan, FILE, read, old, spec):
        assert _state(scan) == _state(FileScan(3))
        return
    expected = FileScan(3)
    assert take_columns(expected, FILE, DECODER.decode_lines(raw), None, old, spec)
    assert _state(scan) == _state(expected)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(files())
def test_a_clean_file_in_the_collectors_form_is_never_declined(events: list[WireEvent]) -> None:
    raw = b"".join(canonical_json(e) + b"\n" for e in events)
    # Clean: times in UTC, strings in ASCII (the hostile events of `files` may be neither).
    assume(raw and raw.isascii() and all(e.time.utcoffset() == timedelta(0) for e in events))
    for payers in (False, True):
        read = read_columns(raw, payers=payers)
        assert read is not None
        _as_decoded(read, events)


def test_times_of_every_form_the_collectors_write() -> None:
    lines = [
        msgspec.json.encode(call(f"e-{i}", model=CHAT, time=moment))
        for i, moment in enumerate(
            ["2026-03-10T12:00:00Z", "2026-03-10T12:00:00.250Z", "2024-02-29T23:59:59.999999Z"]
        )
    ]
    raw = b"\n".join(lines)
    read = read_columns(raw)
    assert read is not None
    _as_decoded(read, DECODER.decode_lines(raw))
    # A day that does not exist, and a leap second, are msgspec's to refuse.
    for moment in ("2026-02-29T00:00:00Z", "2026-03-10T23:59:60Z", "0000-01-01T00:00:00Z"):
        bad = msgspec.json.encode(call("e-9", model=CHAT, time=moment))
        assert read_columns(raw + b"\n" + bad) is None


def test_counts_at_and_past_their_bound() -> None:
    most = msgspec.json.encode(call("e-1", model=CHAT, input_tokens=10**12))
    past = msgspec.json.encode(call("e-2", model=CHAT, input_tokens=10**12 + 1))
    read = read_columns(most)
    assert read is not None
    assert read.inputs.tolist() == [10**12]
    assert read_columns(most + b"\n" + past) is None
    with pytest.raises(msgspec.ValidationError):
        DECODER.decode(past)


def test_a_long_line_is_declined() -> None:
    good = msgspec.json.encode(call("e-1", model=CHAT))
    long = good.replace(b'"account":"acct-1"', b'"account":"' + b"a" * 20_000 + b'"')
    assert read_columns(good) is not None
    assert read_columns(good + b"\n" + long) is None
    assert np.frombuffer(good, np.uint8).size < 16 << 10
