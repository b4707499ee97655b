"""Counting tokens without trusting the upstream: bounds and estimates from bytes.

The deployment behind the gateway runs a developer's code, and the developer is paid by
usage, so the token counts its server reports are believed only when they are possible. Every
byte-level tokenizer in use (GPT-2/tiktoken BPE, SentencePiece with byte fallback, Llama 3's)
spends at least one byte of text per ordinary token, so the bytes of the text are an upper
bound on its tokens, plus a few special tokens per message (chat templates wrap each message in
role markers) and per reply (end of turn). A count above that bound is impossible, so the call
is billed on the gateway's own estimate instead: about four bytes per token, the usual figure
for English text under those tokenizers, and never above the bound.

Pure functions over decoded JSON: the gateway's app calls them with what it forwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = [
    "BYTES_PER_TOKEN",
    "Kind",
    "Measure",
    "Settled",
    "measure_choices",
    "measure_request",
    "settle",
    "upstream_usage",
]

Kind = Literal["chat", "completion", "embedding"]
TokensSource = Literal["upstream", "measured"]

# The estimate: bytes of text per token for English under BPE tokenizers.
BYTES_PER_TOKEN = 4
# Upper bounds on special tokens: chat templates spend at most a handful per message (role
# markers, separators) and per request (the reply's opening); a reply ends with a few.
_BOUND_PER_PIECE = 8
_BOUND_PER_REQUEST = 16
# The estimate's share of those: OpenAI's own accounting is 3 per message and 3 per reply.
_ESTIMATE_PER_PIECE = 3
_ESTIMATE_PER_REQUEST = 3
# Keys whose values are protocol, not text the model reads or writes.
_NOT_TEXT = frozenset({"role", "type", "id", "index", "finish_reason", "object", "logprobs"})
# Fields of a request whose text the model reads, by endpoint.
_INPUT_FIELDS: Mapping[Kind, tuple[str, ...]] = {
    "chat": ("messages", "tools", "functions"),
    "completion": ("prompt", "suffix"),
    "embedding": ("input",),
}


@dataclass(frozen=True, slots=True)
class Measure:
    """What the gateway counted itself: bytes of text, ready-made token ids (a prompt may be
    sent as token ids, each exactly one token) and pieces (messages, choices) that each carry
    special tokens."""

    text_bytes: int = 0
    token_ids: int = 0
    pieces: int = 0

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            self.text_bytes + other.text_bytes,
            self.token_ids + other.token_ids,
            self.pieces + other.pieces,
        )

    @property
    def bound(self) -> int:
        """No tokenizer can have produced more tokens than this."""
        return _bound(self.text_bytes, self.token_ids, self.pieces)

    @property
    def estimate(self) -> int:
        """The gateway's own count, billed when the upstream's cannot be believed."""
        return _estimate(self.text_bytes, self.token_ids, self.pieces)


def _bound(text_bytes: int, token_ids: int, pieces: int) -> int:
    if not (text_bytes or token_ids or pieces):
        return 0
    return text_bytes + token_ids + _BOUND_PER_PIECE * pieces + _BOUND_PER_REQUEST


def _estimate(text_bytes: int, token_ids: int, pieces: int) -> int:
    if not (text_bytes or token_ids or pieces):
        return 0
    text = -(-text_bytes // BYTES_PER_TOKEN)
    return min(
        _bound(text_bytes, token_ids, pieces),
        text + token_ids + _ESTIMATE_PER_PIECE * pieces + _ESTIMATE_PER_REQUEST,
    )


class Settled(NamedTuple):
    input_tokens: int
    output_tokens: int
    source: TokensSource


def _walk(value: object) -> tuple[int, int]:
    """(UTF-8 bytes of every text value under `value`, how many integers (token ids) it
    holds); keys are structure, never counted. Iterative: a request may nest deeper than
    Python's recursion limit. Decoded JSON holds exactly dict, list, str, int, float, bool and
    None; the exact types are tested first (cheap), their subclasses after."""
    text = ids = 0
    stack = [value]
    pop = stack.pop
    push = stack.append
    while stack:
        item = pop()
        if type(item) is str:
            text += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif type(item) is dict:
            for key, inner in item.items():
                if key not in _NOT_TEXT:
                    if type(inner) is str and inner.isascii():
                        text += len(inner)
                    else:
                        push(inner)
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is int:
            ids += 1
        elif type(item) is bool or type(item) is float or item is None:
            continue
        elif isinstance(item, str):
            text += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            ids += 1
        elif isinstance(item, Mapping):
            stack.extend(v for k, v in item.items() if k not in _NOT_TEXT)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return text, ids


def measure_request(kind: Kind, request: Mapping[str, object]) -> Measure:
    """The input the model reads: the text of the request's input fields."""
    text = ids = 0
    for name in _INPUT_FIELDS[kind]:
        if name in request:
            more_text, more_ids = _walk(request[name])
            text += more_text
            ids += more_ids
    if kind != "chat":
        # Numbers in a prompt are token ids; a chat request's numbers are parameters.
        return Measure(text, ids, 0)
    messages = request.get("messages")
    return Measure(text, 0, len(messages) if isinstance(messages, list) else 0)


def measure_choices(choices: object) -> Measure:
    """The output the model wrote: the text of a response's (or a stream chunk's) choices."""
    if not isinstance(choices, list):
        return Measure()
    return Measure(_walk(choices)[0], 0, 0)


def upstream_usage(kind: Kind, usage: object) -> tuple[int, int] | None:
    """(input, output) tokens from an OpenAI `usage` object, or None when it has none or it
    is not one (a count that is not a non-negative integer is no count)."""
    if type(usage) is not dict and not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0 if kind == "embedding" else None)
    if not _count(prompt) or not _count(completion):
        return None
    assert isinstance(prompt, int)
    assert isinstance(completion, int)
    return prompt, completion


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def settle(
    measured_in: Measure,
    measured_out: Measure,
    choices: int,
    reported: tuple[int, int] | None,
) -> Settled:
    """The counts that are billed: the upstream's when it reported possible ones, else the
    gateway's estimate. `choices` is how many replies were written (each may end with special
    tokens)."""
    out_text, out_ids = measured_out.text_bytes, measured_out.token_ids
    if out_text == 0 and choices == 0:
        out_ids = 0
    if reported is not None:
        tokens_in, tokens_out = reported
        if tokens_in <= measured_in.bound and tokens_out <= _bound(out_text, out_ids, choices):
            return Settled(tokens_in, tokens_out, "upstream")
    return Settled(measured_in.estimate, _estimate(out_text, out_ids, choices), "measured")
