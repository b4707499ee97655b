"""Where things are in the repository, who writes them, and who the bot is."""

from __future__ import annotations

import pytest
from dulwich.repo import MemoryRepo

from formarket.errors import InputError, NotFoundError
from formarket.market import layout
from formarket.market.governance import bot_identity, read_governance
from formarket.market.refs import branch_tip
from formarket.market.writer import Identity, commit_changes

MAINTAINER = Identity("mara-maintainer", "mara@example.org")


def test_only_the_bot_writes_deployments_usage_and_closed_periods() -> None:
    assert layout.bot_writes(layout.deployment_path("dep-1"))
    assert layout.bot_writes("registry/usage/2026/03/01/gateway/gw-1-000001.jsonl.gz")
    assert layout.bot_writes(f"{layout.period_folder('2026-03')}/summary.json")
    assert not layout.bot_writes(layout.POLICY)
    assert not layout.bot_writes(layout.GOVERNANCE)
    assert not layout.bot_writes("registry/models/acme/chat/listing.yaml")
    assert not layout.bot_writes("registry/deploymentsX/dep-1.yaml")


def test_every_place_is_below_registry_or_royalties_and_named_once() -> None:
    names = [place.name for place in layout.PLACES]
    assert len(names) == len(set(names))
    for place in layout.PLACES:
        assert place.path.split("/")[0] in (layout.REGISTRY, layout.ROYALTIES)
        assert not place.path.endswith("/")
    assert layout.BOT_PATHS == ("registry/deployments/", "registry/usage/", "royalties/")
    assert frozenset({"royalties/policy.yaml"}) == layout.MAINTAINER_FILES


def test_a_period_folder_needs_a_month() -> None:
    assert layout.period_folder("2026-12") == "royalties/2026-12"
    with pytest.raises(ValueError, match="not a period"):
        layout.period_folder("2026-13")


def _market(governance: bytes | None) -> MemoryRepo:
    repo = MemoryRepo()
    files = {"README.md": b"market\n"}
    if governance is not None:
        files[layout.GOVERNANCE] = governance
    commit_changes(repo, "main", files, "Start", MAINTAINER)
    return repo


def test_the_bot_is_named_by_governance_at_the_branch_tip() -> None:
    repo = _market(b"maintainers: [mara-maintainer]\nbot: farm-bot\ndeployers: [dana]\n")

    governance = read_governance(repo, branch_tip(repo, "main"))
    bot = bot_identity(repo, "main")

    assert governance.maintainers == ("mara-maintainer",)
    assert governance.deployers == ("dana",)
    assert (bot.name, bot.email) == ("farm-bot", "farm-bot@users.noreply.github.com")


@pytest.mark.parametrize(
    "governance", [None, b"maintainers: [mara-maintainer]\n", b"bot: [not, a, login]\n", b"{"]
)
def test_missing_or_invalid_governance_names_no_bot(governance: bytes | None) -> None:
    repo = _market(governance)

    with pytest.raises(InputError) as raised:
        bot_identity(repo, "main")

    assert raised.value.hint


def test_a_branch_without_commits_names_no_bot() -> None:
    with pytest.raises(NotFoundError, match="no commits"):
        bot_identity(MemoryRepo(), "main")
