"""Events' keys as 64-bit digests: what the readers of usage sort to find repeated events.

An event is identified by (source, id). Its digest stands for it when looking for repeats:
sorting digests (numpy, 8 bytes an event) finds every key that may occur more than once, and
only those events are read again and compared in full. The digest is keyed with a secret seed
and is the same in every process for the same seed, so a file's digests can be kept in the
cache with the rest of what the file holds (`formarket.usage.partials`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["key_digests", "padded_digests"]

_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S29 = np.uint64(29)


def key_digests(source: str, ids: Sequence[str], seed: int) -> npt.NDArray[np.int64]:
    """A 64-bit number for each event's (source, id), the same in every process for the same
    `seed`, so that a file's digests can be kept in the cache. Only ever used to pick which
    events to compare in full: two keys with one digest cost a second look, never a lost or a
    doubled event. The seed is secret (from the machine's cache key), so that no one writing
    usage can aim for many such second looks."""
    if not ids:
        return np.empty(0, dtype=np.int64)
    # Only ids that match EVENT_ID_PATTERN are digested (events with others are set aside
    # first): ASCII without NUL, so the zero padding of the shorter ids is unambiguous.
    try:
        codes = np.array(ids, dtype=bytes)
    except UnicodeEncodeError:
        codes = np.array([i.encode() for i in ids], dtype=bytes)
    width = -(-codes.dtype.itemsize // 8)
    padded = codes.astype(f"S{width * 8}")
    columns = padded.view(np.uint64).reshape(len(ids), width)
    lengths = np.char.str_len(codes).astype(np.uint64)
    return padded_digests(source, columns, lengths, seed)


def padded_digests(
    source: str, words: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint64], seed: int
) -> npt.NDArray[np.int64]:
    """`key_digests` of ids given as rows of 8-byte words, zero-padded, and their lengths in
    bytes (as formarket.usage.lines reads them)."""
    # The source and the seed, once per call, by a keyed hash; the ids by a fast mix of
    # their 8-byte words, in numpy, from there.
    start = int.from_bytes(
        hashlib.blake2b(source.encode(), digest_size=8, key=seed.to_bytes(8, "little")).digest(),
        "little",
    )
    width = words.shape[1]
    counted = (lengths + np.uint64(7)) // np.uint64(8)
    digests = np.full(len(lengths), start, dtype=np.uint64)
    # Each id's own words only: its digest must not depend on the longest id beside it.
    for j in range(width):
        mixed = (digests ^ words[:, j]) * _PRIME
        mixed ^= mixed >> _S29
        digests = np.where(counted > j, mixed, digests)
    digests ^= lengths * _PRIME
    digests ^= digests >> _S33
    digests *= _MIX1
    digests ^= digests >> _S33
    digests *= _MIX2
    digests ^= digests >> _S33
    return digests.view(np.int64)
