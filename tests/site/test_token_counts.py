"""A listing's page says how its tokens are counted: exactly, with the model's own tokenizer,
or by the gateway's estimate, which the page must call an estimate."""

from __future__ import annotations

import html
import re
from pathlib import Path

from .conftest import Build


def _note(out: Path, page: str) -> str:
    text = (out / page / "index.html").read_text()
    found = re.search(r'<p class="fm-note" id="token-counts">(.*?)</p>', text, re.S)
    assert found, f"{page} says nothing of how its tokens are counted"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))


def test_a_model_with_a_tokenizer_counts_exactly(registry: Path, build: Build) -> None:
    note = _note(build(registry).out, "models/tinyforge/echo-chat")
    assert "exact" in note
    assert "estimate" not in note
    assert "tokenizer.json" in note
    assert "4 tokens per message" in note
    assert "2 for the reply" in note


def test_listings_without_a_tokenizer_say_their_counts_are_estimates(
    registry: Path, build: Build
) -> None:
    out = build(registry).out
    for page in ("models/northwind-ai/northwind-chat-8b", "agents/tinyforge/faq-bot"):
        note = _note(out, page)
        assert "estimates" in note, page
        assert "exact" not in note, page
