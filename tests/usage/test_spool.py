"""The spool's lines: what was written reads back, and damage (a torn line, a flipped bit) is
caught, never taken for an event."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from formarket.usage.spool import encode_line, parse_segment


@given(st.lists(st.binary(min_size=1).filter(lambda b: b"\n" not in b), max_size=20), st.data())
def test_segments_read_back_what_was_written_and_catch_damage(
    payloads: list[bytes], data: st.DataObject
) -> None:
    segment = b"".join(encode_line(p) for p in payloads)
    read = parse_segment(segment)
    assert [p for _, p in read.events] == payloads
    assert not read.problems
    if segment:
        cut = data.draw(st.integers(0, len(segment) - 1))
        torn = parse_segment(segment[:cut])
        assert len(torn.events) + len(torn.problems) <= len(payloads)
        assert all(p in payloads for _, p in torn.events)
        position = data.draw(st.integers(0, len(segment) - 1))
        flipped = bytearray(segment)
        flipped[position] ^= data.draw(st.integers(1, 255))
        damaged = parse_segment(bytes(flipped))
        # A damaged line is never taken for an event it was not.
        assert all(p in payloads for _, p in damaged.events)
        assert len(damaged.events) < len(payloads) or damaged.problems


def test_a_checksum_whose_letters_changed_case_is_damage() -> None:
    # crc32(b"\x00\x00") is 41d912ff: hex that still parses once its case bit flips.
    line = encode_line(b"\x00\x00")
    assert line[:8] == b"41d912ff"
    damaged = line[:2] + line[2:3].upper() + line[3:]
    read = parse_segment(damaged)
    assert not read.events
    assert read.problems[0].reason.startswith("checksum mismatch")
