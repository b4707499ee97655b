"""A file of usage lines in the collectors' form, read into columns in C.

Decoding a line into Python objects (msgspec, 1 µs) and then taking each field of each event
(a `map` per field, 45 ns an event each) was most of a cold close. The collectors write every
line in one form, though: the schema's fields in its order, no spaces, plain ASCII strings,
times in UTC with a "Z". `read_columns` reads a whole file of such lines in C
(`formarket.usage._lines`, built with the package): counts and times into numpy arrays, each
string field into its distinct values and a number per line, the ids as the digests take
them. A file with a single line in any other form is not read here (None): msgspec and the
loop read it, to the same result, and say what is wrong where. Nothing is decided here
either: the patterns of the strings and every rule of a close are checked over these
columns by `formarket.usage.columns`, as for the events msgspec decodes.

Where the C part could not be built (no compiler), `read_columns` is always None and every
file is read the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from formarket.schemas.usage import MAX_COUNT
from formarket.usage.files import MAX_LINE_BYTES
from formarket.usage.wire import WireRef

try:
    from formarket.usage import _lines
except ImportError:  # pragma: no cover - built with the package wherever gcc is
    _lines = None  # type: ignore[assignment]

__all__ = ["BUILT", "LineColumns", "read_columns", "ref_of"]

BUILT = _lines is not None

_I64 = np.dtype("<i8")
_I32 = np.dtype("<i4")
_REF_JOIN = '","version":"'


@dataclass(frozen=True, slots=True)
class LineColumns:
    """A file's events by field. `*_codes` number each event's value in the list of distinct
    values beside it, in the order they were met (-1: null or absent)."""

    count: int
    micros: npt.NDArray[np.int64]  # time, in microseconds since 1970-01-01 UTC
    requests: npt.NDArray[np.int64]
    inputs: npt.NDArray[np.int64]
    outputs: npt.NDArray[np.int64]
    seconds: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]  # where each line starts in the file's bytes
    calls: npt.NDArray[np.bool_]  # the type is a call (else instance hours)
    oks: npt.NDArray[np.bool_]  # the outcome is "ok"
    id_words: npt.NDArray[np.uint64]  # each id zero-padded, as 8-byte words
    id_lengths: npt.NDArray[np.uint64]
    ids_joined: bytes  # every id followed by a line break
    sources: list[str]
    source_codes: npt.NDArray[np.int32]
    subjects_joined: bytes  # every deployment followed by a line break
    # With `payers`, the distinct accounts and each event's number among them; else every
    # account followed by a line break, and no numbers.
    accounts: list[str]
    account_codes: npt.NDArray[np.int32]
    accounts_joined: bytes | None
    refs: list[str]  # each listing version by its key (`ref_of` makes it a WireRef)
    agent_codes: npt.NDArray[np.int32]
    model_codes: npt.NDArray[np.int32]
    tokens: list[str]
    token_codes: npt.NDArray[np.int32]
    parents: list[str]
    parent_codes: npt.NDArray[np.int32]


def ref_of(key: str) -> WireRef:
    """The listing version a key of `LineColumns.refs` names (`id","version":"version`, as the
    line holds it: neither string holds a quote)."""
    ident, version = key.split(_REF_JOIN)
    return WireRef(ident, version)


def read_columns(raw: bytes, *, payers: bool = False) -> LineColumns | None:
    """`raw`'s events by field, or None when any line is not in the collectors' form (or the
    reader was not built). Each event's paying account is numbered only with `payers`: a
    month's files name tens of thousands of accounts, which a close only checks against
    their pattern."""
    if _lines is None:
        return None
    parsed = _lines.parse(raw, MAX_COUNT, MAX_LINE_BYTES, payers)
    if parsed is None:
        return None
    (
        count,
        micros,
        requests,
        inputs,
        outputs,
        seconds,
        starts,
        calls,
        oks,
        models,
        width,
        padded,
        lengths,
        joined,
        tables,
        columns,
    ) = parsed
    sources, subjects, accounts, refs, tokens, parents = tables
    codes = [np.frombuffer(c, _I32) for c in columns]
    return LineColumns(
        count=count,
        micros=np.frombuffer(micros, _I64),
        requests=np.frombuffer(requests, _I64),
        inputs=np.frombuffer(inputs, _I64),
        outputs=np.frombuffer(outputs, _I64),
        seconds=np.frombuffer(seconds, _I64),
        starts=np.frombuffer(starts, _I64),
        calls=np.frombuffer(calls, np.bool_),
        oks=np.frombuffer(oks, np.bool_),
        id_words=np.frombuffer(padded, np.uint64).reshape(count, width // 8),
        id_lengths=np.frombuffer(lengths, np.uint64),
        ids_joined=joined,
        sources=sources,
        source_codes=codes[0],
        subjects_joined=subjects,
        accounts=accounts if payers else [],
        account_codes=codes[2],
        accounts_joined=None if payers else accounts,
        refs=refs,
        agent_codes=codes[3],
        model_codes=np.frombuffer(models, _I32),
        tokens=tokens,
        token_codes=codes[4],
        parents=parents,
        parent_codes=codes[5],
    )
