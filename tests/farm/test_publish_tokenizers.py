"""The farm stocks each model version's tokenizer for the gateway: copied by content from git,
named in its model deployments' routes, remembered once a version is known."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dulwich.repo import Repo

from formarket.farm.publish import routes_for, stock_tokenizers, tip_reader
from formarket.gateway.tokenizer import tokenizer_path
from formarket.market.governance import bot_identity
from formarket.market.writer import commit_changes
from tests.farm.factories import deployment

ROOT = Path(__file__).parents[2]
ECHO = ROOT / "registry/models/tinyforge/echo-chat"
SHA = hashlib.sha256((ECHO / "tokenizer.json").read_bytes()).hexdigest()


def _desired() -> dict:
    model = deployment("dep-1", version="1.1.0")
    agent = deployment("dep-2", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-1")
    other = deployment("dep-3", listing="tinyforge/tiny-embed", version="0.0.1")
    return {d.id: d for d in (model, agent, other)}


def test_a_models_tokenizer_is_copied_by_content_and_routed(
    marketplace: Repo, tmp_path: Path
) -> None:
    desired = _desired()
    stocked = stock_tokenizers(tip_reader(marketplace, "main"), desired, tmp_path)

    echo = stocked[("tinyforge/echo-chat", "1.1.0")]
    assert echo is not None
    assert (echo.sha256, echo.per_message, echo.per_reply) == (SHA, 4, 2)
    assert tokenizer_path(tmp_path, SHA).read_bytes() == (ECHO / "tokenizer.json").read_bytes()
    # A version the tip does not hold is not guessed.
    assert ("tinyforge/tiny-embed", "0.0.1") not in stocked

    routes = {
        r.deployment: r
        for r in routes_for(
            desired,
            {"dep-1": "http://10.0.0.5:8080", "dep-2": "http://10.0.0.6:8080"},
            tokenizers=stocked,
        )
    }
    assert routes["dep-1"].tokenizer == echo
    # An agent's replies are its own code's text: estimated.
    assert routes["dep-2"].tokenizer is None


def test_a_version_once_known_keeps_its_tokenizer_after_the_listing_moves_on(
    marketplace: Repo, tmp_path: Path
) -> None:
    desired = _desired()
    stock_tokenizers(tip_reader(marketplace, "main"), desired, tmp_path)
    listing = (ECHO / "listing.yaml").read_text()
    commit_changes(
        marketplace,
        "main",
        {
            "registry/models/tinyforge/echo-chat/listing.yaml": listing.replace(
                "version: 1.1.0", "version: 1.2.0"
            ).encode(),
            "registry/models/tinyforge/echo-chat/tokenizer.json": None,
        },
        "echo-chat 1.2.0 without its tokenizer",
        bot_identity(marketplace, "main"),
    )

    again = stock_tokenizers(tip_reader(marketplace, "main"), desired, tmp_path)

    assert again[("tinyforge/echo-chat", "1.1.0")] is not None
    memo = json.loads((tmp_path / "tokenizers" / "listings.json").read_text())
    assert memo["tinyforge/echo-chat@1.1.0"]["sha256"] == SHA


def test_a_listing_without_a_tokenizer_is_estimated(marketplace: Repo, tmp_path: Path) -> None:
    version = "0.0.0"
    for line in (
        (ROOT / "registry/models/tinyforge/tiny-embed/listing.yaml").read_text().split("\n")
    ):
        if line.startswith("version: "):
            version = line.removeprefix("version: ")
    desired = {"dep-1": deployment("dep-1", listing="tinyforge/tiny-embed", version=version)}

    stocked = stock_tokenizers(tip_reader(marketplace, "main"), desired, tmp_path)

    assert stocked == {("tinyforge/tiny-embed", version): None}
    routes = routes_for(desired, {"dep-1": "http://10.0.0.5:8080"}, tokenizers=stocked)
    assert routes[0].tokenizer is None


def test_a_missing_file_is_estimated_and_looked_up_again(marketplace: Repo, tmp_path: Path) -> None:
    commit_changes(
        marketplace,
        "main",
        {"registry/models/tinyforge/echo-chat/tokenizer.json": None},
        "the tokenizer goes missing",
        bot_identity(marketplace, "main"),
    )
    desired = _desired()
    assert stock_tokenizers(tip_reader(marketplace, "main"), desired, tmp_path) == {}
    assert not (tmp_path / "tokenizers" / "listings.json").exists()
