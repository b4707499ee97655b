"""A model's tokenizer file: a Hugging Face `tokenizer.json` in the listing's folder.

The registry checks it (REG028) and the gateway loads it with the same `parse_tokenizer`, so a
tokenizer the gateway counts with is one the check accepted, for the same reasons.

The listing's developer is paid by the token and writes this file, so it is read as hostile
input: its size is capped before it is parsed, a panic of the Rust library is an error like any
other, and it must count a fixed sample of text at most one token per UTF-8 byte, which every
honest tokenizer does (a byte-level BPE spends at most one token per byte; a tokenizer that
expands text into more tokens than it has bytes would bill for text nobody sent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tokenizers import Tokenizer

from formarket.errors import InputError
from formarket.registry.findings import Finding, finding
from formarket.schemas.listing import ModelListing
from formarket.yamldoc import LoadedYaml

__all__ = ["MAX_TOKENIZER_BYTES", "SAMPLE", "parse_tokenizer", "tokenizer_findings"]

# Real tokenizers: GPT-2's tokenizer.json is 1.4 MB, Qwen 2.5's 7 MB, Llama 3's 9.1 MB; this is
# also the largest file a listing's folder may hold (REG024).
MAX_TOKENIZER_BYTES = 10 << 20

SAMPLE: tuple[str, ...] = (
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.\n\n  indented\ttabbed",
    "Grüße aus Köln — naïve café, déjà vu.",
    "日本語のテキストと中文文本，한국어 텍스트.",
    "emoji 🙂👍🏽 and symbols ∑∫√ €£¥",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code",
    "a" * 300,
    " " * 64,
)


def _is_exit(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def parse_tokenizer(data: bytes, where: str) -> Tokenizer:
    """The tokenizer in `data`, or InputError saying why it is none the gateway counts with."""
    if len(data) > MAX_TOKENIZER_BYTES:
        raise InputError(
            f"{where}: the tokenizer is {len(data)} bytes; the limit is {MAX_TOKENIZER_BYTES}",
            hint="a tokenizer.json of a real model is a few MB; check that this is one",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 JSON", hint="save the tokenizer as UTF-8") from exc
    try:
        tokenizer = Tokenizer.from_str(text)
        # Padding and truncation are settings for batches fed to a model, not text: padding
        # to a fixed length would bill every call that length.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        for sample in SAMPLE:
            tokens = len(tokenizer.encode(sample, add_special_tokens=False))
            if tokens > len(sample.encode("utf-8")):
                raise InputError(
                    f"{where}: the tokenizer counts {tokens} tokens in {sample[:20]!r}...,"
                    " more than its bytes",
                    hint="a tokenizer may not count more tokens than the text has bytes",
                )
    except InputError:
        raise
    except BaseException as exc:
        # The library's Rust panics arrive as a BaseException of their own.
        if _is_exit(exc):
            raise
        raise InputError(
            f"{where}: the tokenizers library cannot use it: {str(exc)[:300]}",
            hint="save it with `tokenizer.save(path)` of the tokenizers library, or copy the"
            " model's own tokenizer.json",
        ) from exc
    return tokenizer


def tokenizer_findings(
    listing: ModelListing,
    doc: LoadedYaml,
    folder: str,
    files: Mapping[str, int],
    read: Callable[[str], bytes | None],
) -> list[Finding]:
    """REG028 when the listing declares a tokenizer the gateway could not count with."""
    declared = listing.tokenizer
    if declared is None:
        return []
    path = f"{folder}/{declared.file}"
    size = files.get(declared.file)
    raw = read(path) if size is not None and 0 <= size <= MAX_TOKENIZER_BYTES else None
    if raw is None:
        problem = (
            f"{declared.file} is missing from {folder}/"
            if size is None
            else f"{declared.file} is {size} bytes; the limit is {MAX_TOKENIZER_BYTES}"
            if size > MAX_TOKENIZER_BYTES
            else f"{declared.file} is not a regular file"
        )
        return [
            finding(
                "REG028",
                doc.path,
                problem,
                line=doc.locate(("tokenizer",)).line,
                hint="put the model's tokenizer.json in the listing's folder, or remove"
                " `tokenizer` (counts are then estimates)",
            )
        ]
    try:
        parse_tokenizer(raw, path)
    except InputError as exc:
        return [finding("REG028", path, exc.message, hint=exc.hint)]
    return []
