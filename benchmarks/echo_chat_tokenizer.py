"""`python -m benchmarks.echo_chat_tokenizer [--check]`: make the tokenizer that tinyforge/echo-chat
ships (registry/models/tinyforge/echo-chat/tokenizer.json), the small real tokenizer that the
gateway's exact counting is tested and measured with.

A byte-level BPE, as GPT-2's and Llama 3's are, trained by the `tokenizers` library on the text
below in well under a second. Training is deterministic for a given library version, so the
committed file can be made again byte for byte: `--check` says whether it still is, and a test
runs the same check.

Its chat template is Phi-3's shape, with one special token per role:

    <|user|>\\n{content}<|end|>\\n ... <|assistant|>\\n

so each message costs its content's tokens plus 4 (role, newline, end, newline) and the reply's
opening costs 2 (role, newline): the `per_message` and `per_reply` that listing.yaml declares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = [
    "PATH",
    "PER_MESSAGE",
    "PER_REPLY",
    "ROLES",
    "render_chat",
    "train",
]

PATH = (
    Path(__file__).resolve().parent.parent
    / "registry"
    / "models"
    / "tinyforge"
    / "echo-chat"
    / "tokenizer.json"
)
ROLES = ("system", "user", "assistant", "tool")
SPECIAL = (*(f"<|{role}|>" for role in ROLES), "<|end|>")
PER_MESSAGE = 4
PER_REPLY = 2
VOCAB_SIZE = 1200

_TEXT = """\
Echo Chat repeats the last message back, so that a deployment, the gateway, metering and your
client code can be checked end to end before anyone pays for a GPU model.
You said: hello. You said: how are you today? You said: what is the price of a call?
The marketplace lists models and agents; a publisher opens a pull request, the registry checks
it, and once it is merged the farm builds an image and runs it in a virtual machine.
Every call goes through the gateway, which counts the tokens of what was asked and answered,
reserves the caller's credit before it forwards the request, and writes a usage event.
Royalties are computed from the committed usage at the end of each period, and statements name
every listing version that was charged, with its price per million input and output tokens.
How do I reset my password? Where can I find my invoice? Which models support tools and JSON?
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
def handler(request):
    messages = request["messages"]
    return {"role": "assistant", "content": "You said: " + messages[-1]["content"]}
{"model": "tinyforge/echo-chat", "messages": [{"role": "user", "content": "hi"}], "n": 1}
Grüße aus Köln: naïve café, déjà vu, façade, coöperation, smørrebrød, Ångström.
¿Dónde está la biblioteca? Ça va très bien, merci. Zażółć gęślą jaźń. Příliš žluťoučký kůň.
日本語のテキストを数えます。中文文本也一样。한국어 텍스트도 셉니다. Русский текст тоже.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2026 3.14 0.30 USD 1,000,000 tokens.
Emoji and symbols: 🙂 👍 🚀 ✓ € £ ¥ ∑ → « » — – … • © ®
"""


def train() -> str:
    """The tokenizer, as the JSON text the library saves (the same text every run)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TEXT.splitlines(keepends=True), trainer)
    return tokenizer.to_str()


def render_chat(messages: list[tuple[str, str]]) -> str:
    """The text the model reads for a chat of (role, content) pairs, ready for its reply."""
    turns = "".join(f"<|{role}|>\n{content}<|end|>\n" for role, content in messages)
    return turns + "<|assistant|>\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.echo_chat_tokenizer")
    parser.add_argument("--check", action="store_true", help="compare; write nothing")
    args = parser.parse_args(argv)
    made = train().encode("utf-8")
    if args.check:
        same = PATH.exists() and PATH.read_bytes() == made
        print(f"{PATH}: {'up to date' if same else 'differs from a fresh training'}")
        return 0 if same else 1
    PATH.write_bytes(made)
    print(f"wrote {PATH} ({len(made)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
