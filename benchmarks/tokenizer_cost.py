"""`python -m benchmarks.tokenizer_cost`: what exact counting adds to one call.

Counts a typical chat call (a system prompt, a question, a three-sentence answer: about 600
bytes in all) and a long one (the same with a 32 KiB document pasted into the question) two
ways, in one process, many times:

- estimate: what the gateway does without a tokenizer (`formarket.gateway.tokens`: measure the
  request and the choices, settle on the byte estimate);
- exact: echo-chat's shipped tokenizer through `formarket.gateway.tokenizer` (each message's
  content, the template's overhead, the answer), the tokenizer already loaded, as it is after a
  route's first call.

Every call's question and answer are new text (numbered), so only the system prompt, which
real clients send unchanged on every call, is found among the counter's recent counts.

Prints the median and 99th percentile per call in microseconds, and the difference, which is
the latency that exact counting adds to a call on top of the estimate.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.echo_chat_tokenizer import PATH, PER_MESSAGE, PER_REPLY
from formarket.gateway.tokenizer import TokenizerCounter, load_counter
from formarket.gateway.tokens import measure_choices, measure_request, settle

SYSTEM = "You are a helpful assistant for the marketplace. Answer briefly and cite the docs."
QUESTION = "How do I deploy the FAQ bot with Echo Chat behind it, and what does one call cost?"
ANSWER = (
    "Run `formarket deploy tinyforge/faq-bot --model tinyforge/echo-chat`; the farm builds both"
    " images and boots them in seconds. Echo Chat is free, so a call costs nothing but the"
    " gateway still meters it. Your usage appears in the repository once the bot commits it."
)
DOCUMENT = ("The quick brown fox jumps over the lazy dog; naïve café, 日本語. " * 600)[:32768]


def _call(question: str, number: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    question = f"{question} ({number})"
    answer = f"{ANSWER} ({number})"
    request = {
        "model": "tinyforge/echo-chat",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ],
        "max_tokens": 200,
    }
    choices = [
        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
    ]
    return request, choices


def estimate(request: dict[str, Any], choices: list[dict[str, Any]]) -> tuple[int, int]:
    settled = settle(measure_request("chat", request), measure_choices(choices), 1, None)
    return settled.input_tokens, settled.output_tokens


def exact(
    counter: TokenizerCounter, request: dict[str, Any], choices: list[dict[str, Any]]
) -> tuple[int, int]:
    messages = request["messages"]
    tokens_in = sum(counter.text(m["content"]) for m in messages)
    tokens_in += counter.chat_overhead(len(messages))
    tokens_out = sum(counter.text(c["message"]["content"]) for c in choices)
    return tokens_in, tokens_out


def _time(work: Callable[[int], object], runs: int) -> tuple[float, float]:
    for i in range(runs // 10):
        work(runs + i)  # calls of their own, so that the measured ones are all new
    samples = []
    for i in range(runs):
        start = time.perf_counter_ns()
        work(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main() -> int:
    counter = load_counter(PATH.read_bytes(), PER_MESSAGE, PER_REPLY)
    print(f"{'call':<10} {'way':<9} {'tokens in/out':>14} {'p50 µs':>9} {'p99 µs':>9}")
    for name, question, runs in (
        ("typical", QUESTION, 20000),
        ("32 KiB in", QUESTION + "\n\n" + DOCUMENT, 500),
    ):
        calls = [_call(question, i) for i in range(runs + runs // 10)]
        ways: dict[str, Callable[[int], tuple[int, int]]] = {
            "estimate": lambda i, calls=calls: estimate(*calls[i]),
            "exact": lambda i, calls=calls: exact(counter, *calls[i]),
        }
        medians = {}
        for way, work in ways.items():
            p50, p99 = _time(work, runs)
            medians[way] = p50
            counted = work(0)
            tokens = f"{counted[0]}/{counted[1]}"
            print(f"{name:<10} {way:<9} {tokens:>14} {p50:>9.1f} {p99:>9.1f}")
        print(f"{name:<10} {'added':<9} {'':>14} {medians['exact'] - medians['estimate']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
