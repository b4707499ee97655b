"""Exact token counts with a model's own tokenizer, for the listings that ship one.

A model listing may declare a Hugging Face `tokenizer.json` in its folder and the overhead of
its chat template (REG028 checks the file). The farm copies that file into the gateway's state
folder by content, as `tokenizers/<sha256>.json`, and names its digest in the route (see
`RouteTokenizer`); `counter_for_route` gives the gateway a `TokenizerCounter` for it.

How a call is counted with a tokenizer (the rules the gateway's meter follows):

- each piece of text (a message's content, a prompt, one embedding input, a reply) is encoded
  on its own, without the tokenizer's automatic special tokens, and counts the length of its
  encoding: a chat template encodes each message's content between its role markers, so the
  pieces of a request add up;
- a chat request adds `chat_overhead(messages)`: `per_message` for each message and
  `per_reply` once for the reply's opening, as the listing declared them (nothing for a
  request without messages); completions and embeddings add nothing;
- a piece never counts more tokens than it has UTF-8 bytes (the gateway's own bound; the
  registry refuses tokenizers that exceed it on its sample, and this holds on any text), and
  a text the tokenizer fails on is counted by the byte estimate rather than raising.

A tokenizer is loaded once per process for each file digest: a listing version's file never
changes, and two listings that ship the same file share one loaded tokenizer.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer

from formarket.errors import InputError
from formarket.gateway.routes import Route, RouteTokenizer
from formarket.gateway.tokens import ESTIMATE, Counter
from formarket.registry.tokenizer_file import parse_tokenizer

__all__ = [
    "TOKENIZERS_DIR",
    "Counter",
    "TokenizerCounter",
    "counter_for_route",
    "load_counter",
    "tokenizer_path",
]

_log = logging.getLogger("formarket.gateway")

TOKENIZERS_DIR = "tokenizers"
# Loaded tokenizers kept per process: a large one holds tens of MB, and a gateway serves few
# distinct models at a time.
_KEEP = 32
# How long a tokenizer that could not be loaded is not tried again (the farm may be writing it).
_RETRY_SECONDS = 5.0
_SURROGATE = re.compile("[\ud800-\udfff]")
# Recent counts by text: a call counts its answer as it arrives and again whole, and a chat
# sends its whole history again on every turn. Bounded in entries and in each text's length.
_MEMO_ENTRIES = 256
_MEMO_CHARS = 16 << 10


class TokenizerCounter:
    """Counts with one tokenizer and one chat template's overhead (see the module's rules)."""

    __slots__ = ("_encode", "_memo", "method", "per_message", "per_reply", "sha256")

    def __init__(self, tokenizer: Tokenizer, sha256: str, per_message: int, per_reply: int):
        self._encode = tokenizer.encode
        self._memo: dict[str, int] = {}
        self.sha256 = sha256
        self.per_message = per_message
        self.per_reply = per_reply
        # An attribute, not a property: it is read several times on every call.
        self.method = f"sha256:{sha256}"

    def text(self, text: str) -> int:
        if not text:
            return 0
        memo = self._memo
        known = memo.get(text)
        if known is not None:
            return known
        tokens = self._count(text)
        if len(text) <= _MEMO_CHARS:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[text] = tokens
        return tokens

    def cut_hint(self, text: str, limit: int) -> int | None:
        """Where the first `limit` tokens end, from one encoding's offsets (in characters):
        at a boundary no token straddles, since a character of several bytes may be split
        across tokens that all claim it whole."""
        if limit <= 0:
            return 0
        if not text.isascii():
            text = _SURROGATE.sub("\ufffd", text)  # one character for one: offsets hold
        try:
            offsets = self._encode(text, add_special_tokens=False).offsets
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            return None
        if len(offsets) <= limit:
            return len(text)
        # Token `limit` is the first one left out: cut where it starts, unless a token kept
        # reaches past that (both hold the same character); then step back.
        for first_out in range(limit, 0, -1):
            start = offsets[first_out][0]
            if offsets[first_out - 1][1] <= start:
                return start
        return 0

    def _count(self, text: str) -> int:
        if text.isascii():
            size = len(text)
        else:
            text = _SURROGATE.sub("\ufffd", text)  # JSON may carry lone surrogates
            size = len(text.encode("utf-8"))
        try:
            tokens = len(self._encode(text, add_special_tokens=False))
        except BaseException as exc:
            # A tokenizer may panic in Rust on some text; that arrives as a BaseException.
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            _log.warning("tokenizer %s failed on %d bytes: %s", self.sha256[:12], size, exc)
            return ESTIMATE.text(text)
        return min(tokens, size)

    def chat_overhead(self, messages: int) -> int:
        # No messages, no chat: nothing to wrap and no reply to open (as the estimate counts).
        return self.per_message * messages + self.per_reply if messages > 0 else 0


_lock = threading.Lock()
_tokenizers: OrderedDict[str, Tokenizer] = OrderedDict()
_counters: dict[tuple[str, int, int], TokenizerCounter] = {}
_failed: dict[str, float] = {}


def _keep(sha256: str, tokenizer: Tokenizer) -> None:
    _tokenizers[sha256] = tokenizer
    _tokenizers.move_to_end(sha256)
    while len(_tokenizers) > _KEEP:
        gone, _ = _tokenizers.popitem(last=False)
        for key in [k for k in _counters if k[0] == gone]:
            del _counters[key]


def _counter(
    sha256: str, per_message: int, per_reply: int, data: Callable[[], bytes]
) -> TokenizerCounter:
    key = (sha256, per_message, per_reply)
    with _lock:
        counter = _counters.get(key)
        if counter is not None:
            return counter
        tokenizer = _tokenizers.get(sha256)
        if tokenizer is None:
            raw = data()
            if hashlib.sha256(raw).hexdigest() != sha256:
                raise InputError(
                    f"the tokenizer file for {sha256[:12]} does not have that digest",
                    hint="the farm writes tokenizers/<sha256>.json; remove the file and let"
                    " its next cycle write it again",
                )
            tokenizer = parse_tokenizer(raw, f"tokenizer {sha256[:12]}")
        _keep(sha256, tokenizer)
        counter = _counters[key] = TokenizerCounter(tokenizer, sha256, per_message, per_reply)
        return counter


def load_counter(data: bytes, per_message: int, per_reply: int) -> TokenizerCounter:
    """A counter for the tokenizer in `data` (InputError when it is none the registry would
    accept); the tokenizer is parsed once per process for each SHA-256."""
    return _counter(hashlib.sha256(data).hexdigest(), per_message, per_reply, lambda: data)


def tokenizer_path(state_dir: Path, sha256: str) -> Path:
    """Where the farm puts a tokenizer in the gateway's state folder."""
    return state_dir / TOKENIZERS_DIR / f"{sha256}.json"


def counter_for_route(
    route: Route, state_dir: Path, *, clock: Callable[[], float] = time.monotonic
) -> Counter | None:
    """The counter of the route's tokenizer; None when it names none, or when its file is
    missing or unusable (then the call is counted by the estimate, which its event records,
    and the file is looked for again a few seconds later)."""
    declared: RouteTokenizer | None = route.tokenizer
    if declared is None:
        return None
    counter = _counters.get((declared.sha256, declared.per_message, declared.per_reply))
    if counter is not None:
        return counter
    failed_at = _failed.get(declared.sha256)
    if failed_at is not None and clock() - failed_at < _RETRY_SECONDS:
        return None
    path = tokenizer_path(state_dir, declared.sha256)
    try:
        found = _counter(declared.sha256, declared.per_message, declared.per_reply, path.read_bytes)
    except (OSError, InputError) as exc:
        _failed[declared.sha256] = clock()
        _log.warning("%s counts by the estimate: %s", route.deployment, exc)
        return None
    _failed.pop(declared.sha256, None)
    return found
