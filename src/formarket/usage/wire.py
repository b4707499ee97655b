"""A usage event as it is read: how a line decodes, what makes it valid, why it is set aside.

`WireEvent` is `formarket.schemas.usage.UsageEvent` as msgspec decodes it, in C, several times
faster than pydantic: the same fields in the same order, with only bounds on its strings.
The patterns are checked by `field_problem` and `ref_problem` (which the hot loop calls once
per distinct value), so that `validate_line` accepts exactly what `UsageEvent` accepts:
tests/usage/test_reader.py holds the two together.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import UNSET, UnsetType

from formarket.rules import rules_of
from formarket.schemas._types import LISTING_ID_PATTERN, SEMVER_PATTERN
from formarket.schemas.usage import (
    ACCOUNT_PATTERN,
    CALL,
    DEPLOYMENT_PATTERN,
    EVENT_ID_PATTERN,
    INSTANCE_HOURS,
    MAX_COUNT,
    SOURCE_PATTERN,
    SetAside,
    event_problem,
)
from formarket.usage.files import MAX_LINE_BYTES

__all__ = [
    "CODES",
    "DECODER",
    "WireData",
    "WireEvent",
    "WireRef",
    "all_accounts_valid",
    "all_ids_valid",
    "all_subjects_valid",
    "canonical_digest",
    "canonical_json",
    "decode_lines",
    "field_problem",
    "is_utc",
    "issue",
    "joined_accounts_valid",
    "joined_ids_valid",
    "joined_subjects_valid",
    "ref_problem",
    "validate_line",
]

# Why usage is set aside, by code: the USG rows of `formarket.rules` (stable forever; tests
# assert on codes, never on the wording of messages).
CODES: dict[str, str] = {rule.id: rule.title for rule in rules_of("USG")}
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
# Strings are only bounded here: msgspec checks a pattern by calling Python's re per value,
# which would triple the cost of a line. `take_events` checks the patterns instead, each
# distinct account, deployment and listing version once per file.
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class WireRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    id: _Text
    version: _Text


class _Data(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    account: _Text
    agent: WireRef | None
    model: WireRef | None
    input_tokens: _Count
    output_tokens: _Count
    requests: _Count
    duration_ms: _Count
    outcome: Literal["ok", "error", "rejected"]
    tokens_source: Annotated[str, msgspec.Meta(min_length=1, max_length=71)]
    instance_seconds: _Count = 0
    # Unset (never written) rather than None, so an event without them re-encodes to the
    # same bytes, and its canonical digest, as before they existed. An explicit null is what
    # `UsageEvent` accepts too, so it is read (and re-encoded as written).
    cut: (
        Literal["max_tokens", "choices", "budget", "size", "duration", "idle"] | UnsetType | None
    ) = UNSET
    parent: _Text | UnsetType | None = UNSET


WireData = _Data


class WireEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """`UsageEvent` as msgspec decodes it: the same fields, in the same order."""

    specversion: Literal["1.0"]
    id: _Text
    source: _Text
    type: Literal["dev.formarket.usage.call", "dev.formarket.usage.instance-hours"]
    time: datetime
    subject: _Text
    datacontenttype: Literal["application/json"]
    data: _Data


_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_ACCOUNT = re.compile(ACCOUNT_PATTERN)
_DEPLOYMENT = re.compile(DEPLOYMENT_PATTERN)
_LISTING = re.compile(LISTING_ID_PATTERN)
_VERSION = re.compile(SEMVER_PATTERN)
_SOURCE = re.compile(SOURCE_PATTERN)
_NEWLINE = ord("\n")
# Many ids at once: one regular expression over the joined ids costs a fraction of one match
# per id. Ids cannot hold a line break, so the join is unambiguous.
_IDS = re.compile("(?:" + EVENT_ID_PATTERN.strip("^$") + "\n)*")
assert {CALL, INSTANCE_HOURS} == {"dev.formarket.usage.call", "dev.formarket.usage.instance-hours"}

DECODER = msgspec.json.Decoder(WireEvent)
_ENCODER = msgspec.json.Encoder()


def canonical_json(event: WireEvent) -> bytes:
    """An event's content, independent of how its line was written: re-encoded with fields
    in schema order, no spaces, time in UTC."""
    return _ENCODER.encode(event)


def canonical_digest(event: WireEvent) -> bytes:
    """The digest of an event's content (`canonical_json`)."""
    return hashlib.sha256(_ENCODER.encode(event)).digest()


def decode_lines(raw: bytes) -> Iterable[tuple[int, WireEvent | SetAside]]:
    """Each non-blank line decoded, or why not (as a SetAside without a file)."""
    for number, line in enumerate(raw.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            yield number, issue("USG003", "", number, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        if not line.strip():
            continue
        try:
            yield number, DECODER.decode(line)
        except msgspec.ValidationError as exc:
            yield number, issue("USG005", "", number, f"not a usage event: {exc}")
        except msgspec.DecodeError as exc:
            yield number, issue("USG004", "", number, f"not JSON: {exc}")


def validate_line(line: bytes) -> WireEvent | str:
    """One line checked as `UsageEvent` checks a document: the event, or why it is not one.
    What depends on the file or the close (source, day, listings) is not checked here."""
    try:
        event = DECODER.decode(line)
    except msgspec.DecodeError as exc:
        return f"not a usage event: {exc}"
    problem = (
        field_problem(event)
        or ("" if _SOURCE.fullmatch(event.source) else "source is not <kind>/<name>")
        or next(
            (p for r in (event.data.agent, event.data.model) if r and (p := ref_problem(r))), ""
        )
        or event_problem(event.type, event.data)
    )
    if not problem and not is_utc(event.time):
        problem = "time is not in UTC"
    return problem or event


class _Shape:
    """The shape of an identifier pattern below: 1 to `longest` ASCII characters of `chars`,
    the first and the last not of `ends`, as the bytes each may be."""

    def __init__(self, chars: bytes, ends: tuple[bytes, bytes], longest: int) -> None:
        self.inner = chars + b"\n"  # the line breaks between values pass here
        self.first = _table(chars.translate(None, ends[0]))
        self.last = _table(chars.translate(None, ends[1]))
        self.longest = longest

    def holds_joined(self, joined: bytes, count: int) -> bool:
        """Every one of `count` values, each followed by a line break in `joined`, has this
        shape: checked over all of them at once, in C (numpy, bytes.translate), rather than
        by a regular expression per value (a file's ids are a megabyte)."""
        if not count:
            return not joined
        raw = np.frombuffer(joined, np.uint8)
        # A value holding a line break would pass as two: the count of breaks rules that out.
        breaks = np.flatnonzero(raw == _NEWLINE)
        if len(breaks) != count or breaks[-1] != len(raw) - 1:
            return False
        starts = np.concatenate(([0], breaks[:-1] + 1))
        lengths = breaks - starts
        if int(lengths.min()) < 1 or int(lengths.max()) > self.longest:
            return False
        # Every byte one of `inner`: what deleting those leaves (bytes.translate, in C, a
        # few times quicker than a table lookup in numpy).
        return (
            not joined.translate(None, self.inner)
            and bool(self.first[raw[starts]].all())
            and bool(self.last[raw[breaks - 1]].all())
        )

    def holds(self, values: list[str]) -> bool:
        # Not ASCII (lone surrogates included) encodes to bytes no table lets pass.
        joined = ("\n".join(values) + "\n" if values else "").encode("utf-8", "surrogatepass")
        return self.holds_joined(joined, len(values))


def _table(chars: bytes) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, np.bool_)
    table[list(chars)] = True
    return table


_ALNUM = string.ascii_letters.encode() + string.digits.encode()
_LOWER = string.ascii_lowercase.encode() + string.digits.encode()
_ID = _Shape(_ALNUM + b"._:-", (b"._:-", b""), 128)
_ACCOUNT_SHAPE = _Shape(_ALNUM + b"._@:-", (b"._@:-", b""), 128)
_SUBJECT = _Shape(_LOWER + b"-", (b"-", b"-"), 64)


def all_ids_valid(ids: list[str]) -> bool:
    """Every one of `ids` matches EVENT_ID_PATTERN (tests/usage/test_columns.py holds the
    two together)."""
    return _ID.holds(ids)


def joined_ids_valid(joined: bytes, count: int) -> bool:
    """`all_ids_valid` of `count` ids given joined, each followed by a line break."""
    return _ID.holds_joined(joined, count)


def all_accounts_valid(accounts: list[str]) -> bool:
    """Every one of `accounts` matches ACCOUNT_PATTERN."""
    return _ACCOUNT_SHAPE.holds(accounts)


def all_subjects_valid(subjects: list[str]) -> bool:
    """Every one of `subjects` matches DEPLOYMENT_PATTERN."""
    return _SUBJECT.holds(subjects)


def joined_accounts_valid(joined: bytes, count: int) -> bool:
    """`all_accounts_valid` of `count` accounts given joined, each followed by a line break."""
    return _ACCOUNT_SHAPE.holds_joined(joined, count)


def joined_subjects_valid(joined: bytes, count: int) -> bool:
    """`all_subjects_valid` of `count` deployments given joined, each followed by a line
    break."""
    return _SUBJECT.holds_joined(joined, count)


def issue(code: str, file: str, line: int, message: str) -> SetAside:
    return SetAside(code=code, file=file, line=line, message=message)


def ref_problem(ref: WireRef) -> str:
    if not _LISTING.fullmatch(ref.id):
        return f"not a usage event: agent or model id {ref.id!r} is not a listing id"
    if not _VERSION.fullmatch(ref.version):
        return f"not a usage event: {ref.version!r} is not a semantic version"
    return ""


def is_utc(moment: datetime) -> bool:
    offset = moment.utcoffset()
    return offset is not None and not offset


def field_problem(
    event: WireEvent,
    accounts: set[str] | None = None,
    subjects: set[str] | None = None,
    id_ok: bool = False,
) -> str:
    """What breaks the patterns the schema gives an event's strings ("" when nothing).
    Valid accounts and deployments are added to `accounts` and `subjects`, and those already
    there are not checked again; `id_ok` says the id was checked already."""
    if not id_ok and not _EVENT_ID.fullmatch(event.id):
        return f"not a usage event: id {event.id!r} does not match {EVENT_ID_PATTERN}"
    account = event.data.account
    if accounts is None or account not in accounts:
        if not _ACCOUNT.fullmatch(account):
            return f"not a usage event: account {account!r} does not match {ACCOUNT_PATTERN}"
        if accounts is not None:
            accounts.add(account)
    subject = event.subject
    if subjects is None or subject not in subjects:
        if not _DEPLOYMENT.fullmatch(subject):
            return f"not a usage event: subject {subject!r} is not a deployment id"
        if subjects is not None:
            subjects.add(subject)
    return ""
