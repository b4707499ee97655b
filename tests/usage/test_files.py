"""A usage file's gzip read as gzip reads it: one member or several, whatever its trailer
says (the size it gives is only where reading starts), truncated or not gzip at all."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.usage.files import decompress

_members = st.lists(
    st.tuples(st.binary(max_size=2_000), st.integers(0, 100_000), st.sampled_from([1, 6, 9])),
    min_size=1,
    max_size=4,
)


def _content(members: list[tuple[bytes, int, int]]) -> list[bytes]:
    return [noise + b"x" * repeats for noise, repeats, _ in members]


@settings(max_examples=200, deadline=None)
@given(_members, st.integers(0, (1 << 32) - 1), st.booleans())
def test_gzip_reads_as_gzip_does(
    members: list[tuple[bytes, int, int]], size: int, lie: bool
) -> None:
    parts = _content(members)
    data = b"".join(
        gzip.compress(part, level, mtime=0)
        for part, (_, _, level) in zip(parts, members, strict=True)
    )
    if lie and size != len(parts[-1]) % (1 << 32):
        # A trailer whose size is not the content's: an error, never other bytes.
        data = data[:-4] + size.to_bytes(4, "little")
        assert isinstance(decompress(data), str)
        return
    assert decompress(data) == b"".join(parts) == gzip.decompress(data)


@settings(max_examples=200, deadline=None)
@given(_members, st.data())
def test_a_truncated_file_is_an_error_or_its_whole_members(
    members: list[tuple[bytes, int, int]], data: st.DataObject
) -> None:
    parts = _content(members)
    whole = [
        gzip.compress(part, level, mtime=0)
        for part, (_, _, level) in zip(parts, members, strict=True)
    ]
    joined = b"".join(whole)
    cut = data.draw(st.integers(1, len(joined) - 1))
    found = decompress(joined[:cut])
    ends = [sum(len(w) for w in whole[: i + 1]) for i in range(len(whole))]
    if cut in ends:
        assert found == b"".join(parts[: ends.index(cut) + 1])
    else:
        assert isinstance(found, str)


def test_what_is_not_gzip_says_so() -> None:
    for data in (b"not gzip at all", zlib.compress(b"zlib, not gzip")):
        found = decompress(data)
        assert isinstance(found, str)
        assert found.startswith("not a gzip file")
