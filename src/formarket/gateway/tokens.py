"""Counting tokens without trusting the upstream: one `Counter` interface, and what is billed.

The deployment behind the gateway runs a developer's code, and the developer is paid by
usage, so the gateway counts what it bills itself, with the `Counter` its route gives: a
listing's own tokenizer when it declares one (exact), else `ESTIMATE`, about four bytes of
UTF-8 per token, the usual figure for English under byte-level BPE tokenizers.

What is billed as output is only what the model generated and the gateway delivered: the text
fields of OpenAI's response schema (message content, refusal, tool-call arguments, completion
text), in the first `n` choices, cut at `max_tokens` per choice (`Trimmer`). Other fields,
however large, are never counted.

Input: with an exact counter the gateway's count is billed and the upstream's `usage` only
compared. With the estimate, the upstream's input count is believed when it is possible: every
byte-level tokenizer spends at least one byte of text per ordinary token, so the bytes of the
text (plus a few special tokens per message and per request) bound it. Output is never billed
above the counter's count of the text delivered.

Pure functions over decoded JSON: the gateway's app calls them with what it forwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, cast

from formarket.usage.events import Cut

if TYPE_CHECKING:  # the route is only passed through; importing it would be a cycle
    from formarket.gateway.routes import Route

__all__ = [
    "BYTES_PER_TOKEN",
    "ESTIMATE",
    "ESTIMATE_SLACK",
    "Counter",
    "Kind",
    "Measure",
    "Settled",
    "Trimmer",
    "counter_for",
    "embedding_inputs",
    "measure_request",
    "settle",
    "trim_embeddings",
    "upstream_usage",
]


class Counter(Protocol):
    """How a route's tokens are counted."""

    @property
    def method(self) -> str:
        """ "estimate", or "sha256:<hex>" of the tokenizer file; recorded in every event."""
        ...

    def text(self, text: str) -> int:
        """Tokens of a piece of text."""
        ...

    def chat_overhead(self, messages: int) -> int:
        """Tokens a chat template adds for that many messages, the reply's opening included."""
        ...

    def cut_hint(self, text: str, limit: int) -> int | None:
        """Where, in characters, `text`'s first `limit` tokens end, when the counter can
        tell cheaply (a tokenizer knows each token's offsets); None when it cannot. Only a
        first guess for cutting an answer: the cut is counted again before it is kept."""
        ...


Kind = Literal["chat", "completion", "embedding"]

# The estimate: bytes of text per token for English under BPE tokenizers.
BYTES_PER_TOKEN = 4
# With the estimate, how far past max_tokens (estimated) a choice may run before it is cut.
ESTIMATE_SLACK = 2
# Upper bounds on special tokens: chat templates spend at most a handful per message (role
# markers, separators) and per request (the reply's opening).
_BOUND_PER_PIECE = 8
_BOUND_PER_REQUEST = 16
# The estimate's share of those: OpenAI's own accounting is 3 per message and 3 per reply.
_ESTIMATE_PER_MESSAGE = 3
_ESTIMATE_PER_REPLY = 3
# Keys whose values are protocol, not text the model reads.
_NOT_TEXT = frozenset({"role", "type", "id", "index", "finish_reason", "object", "logprobs"})
# Fields of a request whose text the model reads, by endpoint.
_INPUT_FIELDS: Mapping[Kind, tuple[str, ...]] = {
    "chat": ("messages", "tools", "functions"),
    "completion": ("prompt", "suffix"),
    "embedding": ("input",),
}


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Estimate:
    """The byte-based estimate behind the `Counter` interface."""

    __slots__ = ()
    method = "estimate"

    def text(self, text: str) -> int:
        return -(-_utf8(text) // BYTES_PER_TOKEN)

    def chat_overhead(self, messages: int) -> int:
        return _ESTIMATE_PER_MESSAGE * messages + _ESTIMATE_PER_REPLY if messages else 0

    def cut_hint(self, text: str, limit: int) -> int | None:
        # Only plain ASCII has a character per byte; elsewhere the search finds the cut.
        return min(len(text), BYTES_PER_TOKEN * max(limit, 0)) if text.isascii() else None


ESTIMATE: Counter = _Estimate()


def counter_for(route: Route) -> Counter:
    """The estimate, for every route: the default of a gateway given no other way to count
    (the server counts a route that names a tokenizer with it, `tokenizer.counter_for_route`)."""
    return ESTIMATE


class Measure(NamedTuple):
    """What the gateway counted of a request itself: bytes of text, the counter's tokens of
    that text, ready-made token ids (a prompt may be sent as token ids, each exactly one
    token) and messages (each wrapped in special tokens by a chat template)."""

    text_bytes: int = 0
    token_ids: int = 0
    pieces: int = 0
    text_tokens: int = 0
    overhead: int = 0

    @property
    def bound(self) -> int:
        """No byte-level tokenizer can have produced more tokens than this."""
        if not (self.text_bytes or self.token_ids or self.pieces):
            return 0
        return (
            self.text_bytes
            + self.token_ids
            + _BOUND_PER_PIECE * self.pieces
            + _BOUND_PER_REQUEST
            + self.overhead
        )

    @property
    def tokens(self) -> int:
        """The counter's count of the input."""
        return self.text_tokens + self.token_ids + self.overhead


class Settled(NamedTuple):
    input_tokens: int
    output_tokens: int
    source: str  # "upstream" (believed, under the estimate) or the counter's method
    disagreed: bool = False  # an exact count differed from the upstream's report


def _walk(value: object, count: Callable[[str], int] | None) -> tuple[int, int, int]:
    """(UTF-8 bytes of every text value under `value`, the counter's tokens of them, how many
    integers (token ids) it holds); keys are structure, never counted. `count` None is the
    estimate, worked out here: a call per string would cost more than the rest of the walk.
    Iterative: a request may nest deeper than Python's recursion limit. Decoded JSON holds
    exactly dict, list, str, int, float, bool and None; the exact types are tested first
    (cheap), their subclasses after."""
    text = tokens = ids = 0
    stack = [value]
    pop = stack.pop
    push = stack.append
    while stack:
        item = pop()
        if type(item) is str:
            size = len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
            text += size
            tokens += -(-size // BYTES_PER_TOKEN) if count is None else count(item)
        elif type(item) is dict:
            for key, inner in item.items():
                if key not in _NOT_TEXT:
                    if count is None and type(inner) is str and inner.isascii():
                        text += len(inner)
                        tokens += -(-len(inner) // BYTES_PER_TOKEN)
                    else:
                        push(inner)
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is int:
            ids += 1
        elif type(item) is bool or type(item) is float or item is None:
            continue
        elif isinstance(item, str):
            plain = str(item)
            text += _utf8(plain)
            tokens += ESTIMATE.text(plain) if count is None else count(plain)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            ids += 1
        elif isinstance(item, Mapping):
            stack.extend(v for k, v in item.items() if k not in _NOT_TEXT)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return text, tokens, ids


def _plain_chat(
    messages: list[object], count: Callable[[str], int] | None
) -> tuple[int, int] | None:
    """`_walk`'s sums over a chat of plain messages (a role and text content, nothing else),
    most of what a gateway sees, without the general walk; None for any other chat."""
    text = tokens = 0
    for message in messages:
        if type(message) is not dict or len(message) != 2 or "role" not in message:
            return None
        content = message.get("content")
        if type(content) is not str:
            return None
        size = len(content) if content.isascii() else len(content.encode("utf-8", "surrogatepass"))
        text += size
        tokens += -(-size // BYTES_PER_TOKEN) if count is None else count(content)
    return text, tokens


def measure_request(kind: Kind, request: Mapping[str, object], counter: Counter) -> Measure:
    """The input the model reads: the text of the request's input fields."""
    text = tokens = ids = 0
    count = None if counter is ESTIMATE else counter.text
    if kind == "chat" and "tools" not in request and "functions" not in request:
        messages = request.get("messages")
        plain = _plain_chat(messages, count) if isinstance(messages, list) else None
        if plain is not None:
            pieces = len(cast(list[object], messages))
            return Measure(plain[0], 0, pieces, plain[1], counter.chat_overhead(pieces))
    for name in _INPUT_FIELDS[kind]:
        if name in request:
            more_text, more_tokens, more_ids = _walk(request[name], count)
            text += more_text
            tokens += more_tokens
            ids += more_ids
    if kind != "chat":
        # Numbers in a prompt are token ids; a chat request's numbers are parameters.
        return Measure(text, ids, 0, tokens, 0)
    messages = request.get("messages")
    pieces = len(messages) if isinstance(messages, list) else 0
    return Measure(text, 0, pieces, tokens, counter.chat_overhead(pieces))


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
    counter: Counter,
    measured_in: Measure,
    output_tokens: int,
    reported: tuple[int, int] | None,
    input_cap: int | None = None,
) -> Settled:
    """The counts that are billed. `output_tokens` is the counter's count of what was
    delivered (`Trimmer.output_tokens`); `input_cap` what was reserved for the input."""
    counted_in = measured_in.tokens
    if counter.method == "estimate":
        if reported is not None:
            tokens_in, tokens_out = reported
            possible = tokens_in <= measured_in.bound and tokens_out <= output_tokens
            if possible and (input_cap is None or tokens_in <= input_cap):
                return Settled(tokens_in, tokens_out, "upstream")
        return Settled(_capped(counted_in, input_cap), output_tokens, counter.method)
    disagreed = reported is not None and reported != (counted_in, output_tokens)
    return Settled(_capped(counted_in, input_cap), output_tokens, counter.method, disagreed)


def _capped(value: int, cap: int | None) -> int:
    return value if cap is None or value <= cap else cap


# --- what the model generated --------------------------------------------------------------


def _prefix(counter: Counter, before: str, text: str, limit: int) -> str:
    """The longest prefix of `text` that, after `before`, the counter counts as at most
    `limit` tokens in all. The counter's hint first (one count to confirm it), else galloping
    then bisection, so a huge `text` costs a few counts of about what is kept; the empty
    prefix is the fallback, so the result always fits."""
    count = counter.text
    if count(before) > limit:
        return ""
    lo, hi = 0, min(len(text), 8 * (limit + 1))
    hint = counter.cut_hint(before + text, limit)
    if hint is not None and len(before) <= hint < len(before) + len(text):
        end = hint - len(before)
        used = count(before + text[:end])
        if used <= limit:
            # Checked even when the hint's prefix uses the whole limit: a BPE tokenizer may
            # count one more character as no more tokens ("0000" and "00000" are both two).
            if count(before + text[: end + 1]) > limit:
                return text[:end]  # the hint was the longest: the usual case
            lo, hi = end, max(hi, end + 1)
        else:
            hi = min(hi, end)
    while hi < len(text) and count(before + text[:hi]) <= limit:
        lo, hi = hi, min(len(text), hi * 2)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(before + text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


class _Choice:
    __slots__ = ("done", "parts", "used")

    def __init__(self) -> None:
        self.used = 0
        self.parts: list[str] = []
        self.done = False


class Trimmer:
    """What a call's answer may carry, enforced as it passes: the first `n` choices (by their
    index), each cut at `max_tokens` of generated text with `finish_reason: "length"`, and no
    more than `budget` tokens billed in all (what the caller's key has reserved). It counts
    with the route's counter as it goes; `output_tokens` is what is billed.

    A piece of text is counted on its own as it arrives; at the end each choice's text is
    counted whole, and the smaller of the two is billed, never more than `max_tokens` a
    choice: so the bill is never above the counter's count of the text delivered nor above
    the limits. With the estimate, a choice is cut only past `ESTIMATE_SLACK` times
    `max_tokens` estimated tokens (still billed `max_tokens` at most): the estimate is a few
    bytes off the model's own count either way, and an honest answer of `max_tokens` tokens
    must not lose its last words to that."""

    __slots__ = (
        "_billed",
        "_choices",
        "_slack",
        "budget",
        "counter",
        "cut",
        "kind",
        "max_tokens",
        "n",
    )

    def __init__(
        self,
        counter: Counter,
        kind: Kind,
        *,
        n: int = 1,
        max_tokens: int | None = None,
        budget: int | None = None,
    ) -> None:
        self.counter = counter
        self.kind = kind
        self.n = n
        self.max_tokens = max_tokens
        self.budget = budget
        self.cut: Cut | None = None  # why the gateway cut the answer short, if it did
        self._choices: dict[int, _Choice] = {}
        self._billed = 0  # tokens billed so far, each choice's capped at max_tokens
        self._slack = ESTIMATE_SLACK if counter.method == "estimate" else 1

    @property
    def choices(self) -> int:
        return len(self._choices)

    @property
    def output_tokens(self) -> int:
        count = self.counter.text
        total = 0
        for state in self._choices.values():
            if len(state.parts) == 1:
                total += self._bill(state.used)  # one piece: counted whole already
            elif state.used:
                total += min(self._bill(state.used), count("".join(state.parts)))
        return total

    @property
    def finished(self) -> bool:
        """Whether every choice the request allows was cut: nothing more may pass."""
        return len(self._choices) >= self.n and all(c.done for c in self._choices.values())

    @property
    def spent(self) -> bool:
        """Whether the budget is used up (a stream stops there)."""
        return self.budget is not None and self._billed >= self.budget

    def response(self, document: dict[str, object]) -> bool:
        """Trim a whole answer in place; whether anything changed."""
        choices = document.get("choices")
        if self.kind == "chat" and type(choices) is list and len(choices) == 1:
            # The usual answer, one choice of plain text within its limits, checked without
            # the general walk: it is most of what a gateway sees.
            choice = choices[0]
            message = choice.get("message") if type(choice) is dict else None
            if (
                type(message) is dict
                and choice.get("index", 0) == 0
                and "delta" not in choice
                and type(message.get("content")) is str
                and not (
                    message.get("refusal")
                    or message.get("tool_calls")
                    or message.get("function_call")
                )
            ):
                text = message["content"]
                tokens = self.counter.text(text)
                limit = self._fresh_limit()
                if limit is None or tokens <= limit:
                    state = self._choices[0] = _Choice()
                    self._take(state, text, tokens)
                    return False
        return self._choices_of(document, whole=True)

    def _fresh_limit(self) -> int | None:
        """What the first choice may count, before anything was billed."""
        cap = self.max_tokens
        limit = None if cap is None else cap * self._slack
        budget = self.budget
        if (
            budget is not None
            and (cap is None or cap > budget)
            and (limit is None or budget < limit)
        ):
            limit = budget
        return limit

    def chunk(self, document: dict[str, object]) -> bool:
        """Trim one chunk of a stream in place; whether anything changed."""
        return self._choices_of(document, whole=False)

    def _choices_of(self, document: dict[str, object], *, whole: bool) -> bool:
        """The choices within `n`; in a whole answer, each index once (a stream's chunks
        repeat them, each carrying the next piece)."""
        choices = document.get("choices")
        if not isinstance(choices, list):
            return False
        kept: list[object] = []
        seen: set[int] = set()
        changed = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                changed = True
                continue
            index = choice.get("index", position)
            if type(index) is not int or not 0 <= index < self.n or (whole and index in seen):
                changed = True
                if self.cut is None:
                    self.cut = "choices"
                continue
            seen.add(index)
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            elif state.done:
                changed = True
                continue
            if self._choice(choice, state):
                changed = True
            kept.append(choice)
        if changed:
            document["choices"] = kept
        return changed

    def _choice(self, choice: dict[str, object], state: _Choice) -> bool:
        changed = False
        if self.kind == "completion":
            slots: list[tuple[dict[str, object], str]] = [(choice, "text")]
        else:
            slots = []
            for name in ("message", "delta"):
                message = choice.get(name)
                if isinstance(message, dict):
                    slots.extend(_message_slots(message))
        for holder, key in slots:
            value = holder.get(key)
            if not isinstance(value, str) or not value:
                continue
            if state.done:
                holder[key] = ""
                changed = True
                continue
            kept = self._admit(value, state)
            if kept is not value:
                holder[key] = kept
                changed = True
        if state.done and choice.get("finish_reason") != "length":
            choice["finish_reason"] = "length"
            changed = True
        return changed

    def _bill(self, used: int) -> int:
        cap = self.max_tokens
        return used if cap is None or used <= cap else cap

    def _admit(self, text: str, state: _Choice) -> str:
        """`text` as far as the limits let it through: the most this choice may count. A
        piece is first counted on its own (cheap); only near the limit is the choice's whole
        text counted again, since pieces counted apart may count more than together (the
        estimate rounds each up)."""
        cap = self.max_tokens
        limit = None if cap is None else cap * self._slack
        reason: Cut = "max_tokens"
        if self.budget is not None:
            # What this choice may bill, the others' bills kept.
            left = self.budget - (self._billed - self._bill(state.used))
            if (cap is None or cap > left) and (limit is None or left < limit):
                limit, reason = left, "budget"
        count = self.counter.text
        tokens = count(text)
        if limit is None or state.used + tokens <= limit:
            self._take(state, text, state.used + tokens)
            return text
        before = "".join(state.parts)
        whole = count(before + text)
        if whole <= limit:
            self._take(state, text, whole)
            return text
        kept = _prefix(self.counter, before, text, limit)
        self._take(state, kept, count(before + kept))
        state.done = True
        if self.cut is None or self.cut == "choices":
            self.cut = reason
        return kept

    def _take(self, state: _Choice, text: str, used: int) -> None:
        self._billed += self._bill(used) - self._bill(state.used)
        state.used = used
        state.parts.append(text)


def _message_slots(message: dict[str, object]) -> list[tuple[dict[str, object], str]]:
    """Where a chat message (or a stream's delta) holds generated text: content (a string or
    text parts), refusal, and the arguments of tool and function calls."""
    slots: list[tuple[dict[str, object], str]] = []
    content = message.get("content")
    if isinstance(content, str):
        slots.append((message, "content"))
    elif isinstance(content, list):
        slots.extend((part, "text") for part in content if isinstance(part, dict))
    slots.append((message, "refusal"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                slots.append((function, "arguments"))
    function = message.get("function_call")
    if isinstance(function, dict):
        slots.append((function, "arguments"))
    return slots


def embedding_inputs(request: Mapping[str, object]) -> int:
    """How many embeddings an embeddings request asks for: one per input."""
    value = request.get("input")
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


def trim_embeddings(document: dict[str, object], inputs: int) -> bool:
    """Keep one embedding per input; whether anything was dropped."""
    data = document.get("data")
    if isinstance(data, list) and len(data) > inputs:
        document["data"] = data[:inputs]
        return True
    return False
