"""Exact counts with a model's own tokenizer: echo-chat's shipped tokenizer on a fixed corpus,
the counting rules as properties, the per-process cache and how a route finds its file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from benchmarks.echo_chat_tokenizer import PATH, PER_MESSAGE, PER_REPLY, render_chat, train
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from formarket.errors import InputError
from formarket.gateway.routes import Route, RouteTokenizer
from formarket.gateway.tokenizer import (
    TokenizerCounter,
    counter_for_route,
    load_counter,
    tokenizer_path,
)
from formarket.gateway.tokens import _prefix
from formarket.registry.tokenizer_file import MAX_TOKENIZER_BYTES
from formarket.schemas.usage import ListingVersion

DATA = PATH.read_bytes()
SHA = hashlib.sha256(DATA).hexdigest()
LISTING = yaml.safe_load((PATH.parent / "listing.yaml").read_text())["tokenizer"]
REFERENCE = Tokenizer.from_str(DATA.decode())


def encoded(text: str) -> int:
    """The tokenizer's own count, independently of the gateway's counter."""
    return len(REFERENCE.encode(text, add_special_tokens=False).ids)


CORPUS: tuple[str, ...] = (
    "",
    " ",
    "\n",
    "hi",
    "Hello, how are you today?",
    "You said: what is the price of a call?\n\nThanks!",
    "Grüße aus Köln: naïve café, déjà vu.",
    "日本語のテキストを数えます。中文文本也一样。한국어 텍스트도 셉니다.",
    "emoji 🙂👍🏽🚀 and ZWJ 👩‍👩‍👧 and flags 🇫🇷",
    "\x00\x01\x7f control \u200b zero-width \ufeff BOM",
    "right-to-left: \u202eevil\u202c and Arabic مرحبا",
    "<|user|> a literal special token <|end|> inside text",
    '{"role": "user", "content": "json inside content"}',
    "\t\tindented\n    code()\n",
    "a" * 10_000,
    "The quick brown fox jumps over the lazy dog. " * 2_000,
    "ß" * 5_000 + "日" * 5_000,
)
MESSAGES = [
    ("system", "You are a helpful assistant."),
    ("user", "Hello, how are you today?"),
    ("assistant", "You said: Hello, how are you today?"),
    ("user", "日本語 and emoji 🙂, then nothing:"),
    ("user", ""),
    ("tool", '{"price": "0.30"}'),
]


@pytest.fixture
def counter() -> TokenizerCounter:
    return load_counter(DATA, LISTING["per_message"], LISTING["per_reply"])


def test_the_shipped_tokenizer_is_made_again_byte_for_byte() -> None:
    assert train().encode() == DATA


def test_the_listing_declares_its_templates_overhead() -> None:
    assert LISTING == {"file": "tokenizer.json", "per_message": 4, "per_reply": 2}
    assert (LISTING["per_message"], LISTING["per_reply"]) == (PER_MESSAGE, PER_REPLY)
    assert encoded(render_chat([])) == PER_REPLY
    assert encoded(render_chat([("user", "")])) == PER_MESSAGE + PER_REPLY


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_a_text_counts_what_the_tokenizer_encodes(counter: TokenizerCounter, text: str) -> None:
    assert counter.text(text) == encoded(text)


def test_completions_count_their_prompts_encoding(counter: TokenizerCounter) -> None:
    # A prompt is a string or a list of them; each is encoded on its own, with no template.
    prompts = list(CORPUS)
    assert sum(counter.text(p) for p in prompts) == sum(encoded(p) for p in prompts)


def test_embeddings_count_each_inputs_encoding(counter: TokenizerCounter) -> None:
    inputs = [*CORPUS, *CORPUS[:3]]
    assert [counter.text(i) for i in inputs] == [encoded(i) for i in inputs]


def test_a_chat_counts_its_rendered_template(counter: TokenizerCounter) -> None:
    for end in range(1, len(MESSAGES) + 1):
        chat = MESSAGES[:end]
        counted = sum(counter.text(content) for _, content in chat) + counter.chat_overhead(
            len(chat)
        )
        # The tokenizer's own count of what the model reads, template and all ...
        assert counted == encoded(render_chat(chat))
        # ... which is its count of each content plus the declared overhead.
        declared = LISTING["per_message"] * len(chat) + LISTING["per_reply"]
        assert counted == sum(encoded(c) for _, c in chat) + declared


def test_the_method_names_the_files_digest(counter: TokenizerCounter) -> None:
    assert counter.method == f"sha256:{SHA}"


# Any text, lone surrogates included (decoded JSON may hold them).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)


@given(ANY_TEXT)
def test_counting_never_raises_and_stays_within_the_bytes(text: str) -> None:
    counter = load_counter(DATA, 4, 2)
    tokens = counter.text(text)
    assert 0 <= tokens <= len(text.encode("utf-8", "surrogatepass"))
    assert (tokens == 0) == (text == "")


@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text()), min_size=1))
def test_a_chat_is_its_pieces_plus_the_template(messages: list[tuple[str, str]]) -> None:
    counter = load_counter(DATA, PER_MESSAGE, PER_REPLY)
    counted = sum(counter.text(c) for _, c in messages) + counter.chat_overhead(len(messages))
    assert counted == encoded(render_chat(messages))


@given(st.integers(1, 1000), st.integers(1, 1000))
def test_template_overhead_adds_up_by_message(a: int, b: int) -> None:
    counter = load_counter(DATA, 4, 2)
    # Each message adds its own; the reply is opened once.
    assert counter.chat_overhead(a + b) == counter.chat_overhead(a) + counter.chat_overhead(b) - 2
    assert counter.chat_overhead(a) == 4 * a + 2


def test_no_messages_no_overhead() -> None:
    counter = load_counter(DATA, 4, 2)
    assert counter.chat_overhead(0) == counter.chat_overhead(-1) == 0


def test_a_tokenizer_is_loaded_once_per_digest() -> None:
    first = load_counter(DATA, 4, 2)
    assert load_counter(bytes(DATA), 4, 2) is first
    other_template = load_counter(DATA, 5, 3)
    assert other_template is not first
    assert other_template.chat_overhead(1) == 8
    # The same loaded tokenizer behind both.
    assert other_template._encode.__self__ is first._encode.__self__  # type: ignore[attr-defined]


INFLATING = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [],
    "normalizer": {"type": "Replace", "pattern": {"String": "e"}, "content": "x" * 40},
    "pre_tokenizer": {
        "type": "Split",
        "pattern": {"Regex": "."},
        "behavior": "Isolated",
        "invert": False,
    },
    "post_processor": None,
    "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"x": 0, "[UNK]": 1}, "unk_token": "[UNK]"},
}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
        json.dumps(INFLATING).encode(),
        DATA[: len(DATA) // 2],
        b" " * (MAX_TOKENIZER_BYTES + 1),
    ],
    ids=["empty", "no-model", "not-utf8", "deep", "inflating", "truncated", "too-large"],
)
def test_a_hostile_tokenizer_is_refused(data: bytes) -> None:
    with pytest.raises(InputError):
        load_counter(data, 4, 2)


def _route(tokenizer: RouteTokenizer | None) -> Route:
    return Route(
        deployment="dep-1",
        endpoint="http://127.0.0.1:9",
        account="acme",
        model=ListingVersion(id="tinyforge/echo-chat", version="1.1.0"),
        tokenizer=tokenizer,
    )


def test_a_route_without_a_tokenizer_has_no_counter(tmp_path: Path) -> None:
    assert counter_for_route(_route(None), tmp_path) is None


def test_a_route_finds_its_tokenizer_by_digest(tmp_path: Path) -> None:
    # The same tokenizer with another digest, so that no earlier test has loaded it.
    data = DATA + b"\n"
    sha = hashlib.sha256(data).hexdigest()
    now = [0.0]
    route = _route(RouteTokenizer(sha256=sha, per_message=3, per_reply=1))
    # Not written yet: the estimate, and no new look before the retry time.
    assert counter_for_route(route, tmp_path, clock=lambda: now[0]) is None
    path = tokenizer_path(tmp_path, sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert counter_for_route(route, tmp_path, clock=lambda: now[0]) is None
    now[0] = 10.0
    found = counter_for_route(route, tmp_path, clock=lambda: now[0])
    assert found is not None
    assert found.method == f"sha256:{sha}"
    assert found.chat_overhead(2) == 7
    assert found.text("Hello, how are you today?") == encoded("Hello, how are you today?")
    assert counter_for_route(route, tmp_path) is found


def test_a_file_that_is_not_its_digest_is_not_used(tmp_path: Path) -> None:
    fake = hashlib.sha256(b"another file").hexdigest()
    path = tokenizer_path(tmp_path, fake)
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA)
    route = _route(RouteTokenizer(sha256=fake, per_message=4, per_reply=2))
    assert counter_for_route(route, tmp_path) is None


def test_recent_counts_are_kept_within_bounds() -> None:
    counter = load_counter(DATA, 4, 2)
    texts = [f"message number {i}: {'x' * (i % 7)}" for i in range(1000)]
    first = [counter.text(t) for t in texts]
    # Counted again, as a call counts its answer piece by piece and then whole: the same.
    assert [counter.text(t) for t in texts] == first == [encoded(t) for t in texts]
    assert len(counter._memo) <= 256
    long = "word " * 5000
    assert counter.text(long) == encoded(long)
    assert long not in counter._memo


def test_padding_and_truncation_in_the_file_do_not_change_counts() -> None:
    settings = json.loads(DATA)
    settings["padding"] = {
        "strategy": {"Fixed": 512},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "<|end|>",
    }
    settings["truncation"] = {
        "direction": "Right",
        "max_length": 3,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    padded = Tokenizer.from_str(json.dumps(settings))
    # As the file says: cut to 3 tokens, then padded to 512, for any text.
    assert len(padded.encode("hi", add_special_tokens=False).ids) == 512
    counter = load_counter(json.dumps(settings).encode(), 4, 2)
    for text in CORPUS:
        assert counter.text(text) == encoded(text)


class _SearchOnly:
    """The same tokenizer without its offsets: the cut found by counting alone."""

    def __init__(self, counter: TokenizerCounter) -> None:
        self.method = counter.method
        self.text = counter.text
        self.chat_overhead = counter.chat_overhead

    def cut_hint(self, text: str, limit: int) -> int | None:
        return None


@settings(max_examples=200)
@given(ANY_TEXT, ANY_TEXT, st.integers(0, 60))
@example("000", "000", 2)  # a prefix that uses the whole limit, and one character more does too
def test_a_cut_from_the_offsets_fits_and_keeps_what_the_search_keeps(
    before: str, text: str, limit: int
) -> None:
    counter = load_counter(DATA, 4, 2)
    kept = _prefix(counter, before, text, limit)
    assert text.startswith(kept)
    if counter.text(before) <= limit:
        assert counter.text(before + kept) <= limit
        assert kept == _prefix(_SearchOnly(counter), before, text, limit)
    else:
        assert kept == ""


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_a_hint_never_splits_a_character_between_tokens(
    counter: TokenizerCounter, text: str
) -> None:
    for limit in (1, 2, 3, 7, 16):
        hint = counter.cut_hint(text, limit)
        assert hint is not None
        assert encoded(text[:hint]) <= limit
