"""The keys agents call their models with: made per agent deployment in the gateway's key
store, billed to its account, scoped to its model deployment, kept while it runs, revoked when
it stops."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from formarket.errors import InputError
from formarket.farm.agentkeys import agent_key, drop_agent_key, sweep_agent_keys
from formarket.gateway.keys import load_keys, revoke_key
from tests.farm.factories import deployment


def test_an_agent_gets_a_key_of_its_account_for_its_model_alone(tmp_path: Path) -> None:
    mine, keys = tmp_path / "farm" / "agent-keys.json", tmp_path / "gw" / "keys.json"
    dep = deployment("dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m")
    made = agent_key(mine, keys, dep)
    record = load_keys(keys).authenticate(made.key)
    assert record is not None
    assert record.account == dep.account
    assert record.scope == ("dep-m",)
    # The same key while it is valid: a VM made again presents what its config disk says.
    assert agent_key(mine, keys, dep) == made
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    assert made.key.encode() in mine.read_bytes()


def test_a_revoked_key_is_replaced_and_a_stopped_agent_loses_its_key(tmp_path: Path) -> None:
    mine, keys = tmp_path / "agent-keys.json", tmp_path / "keys.json"
    dep = deployment("dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m")
    first = agent_key(mine, keys, dep)
    revoke_key(keys, first.id)
    second = agent_key(mine, keys, dep)
    assert second.id != first.id
    assert load_keys(keys).authenticate(second.key) is not None
    assert drop_agent_key(mine, keys, "dep-a") is True
    assert load_keys(keys).authenticate(second.key) is None
    assert drop_agent_key(mine, keys, "dep-a") is False


def test_the_sweep_revokes_the_keys_of_agents_git_no_longer_wants(tmp_path: Path) -> None:
    mine, keys = tmp_path / "agent-keys.json", tmp_path / "keys.json"
    assert sweep_agent_keys(mine, keys, set()) == []
    kept, gone = (
        agent_key(
            mine,
            keys,
            deployment(d, kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m"),
        )
        for d in ("dep-a", "dep-b")
    )
    assert sweep_agent_keys(mine, keys, {"dep-a", "dep-m"}) == ["dep-b"]
    store = load_keys(keys)
    assert store.authenticate(kept.key) is not None
    assert store.authenticate(gone.key) is None
    assert sweep_agent_keys(mine, keys, {"dep-a"}) == []


def test_a_model_gets_no_key(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        agent_key(tmp_path / "a.json", tmp_path / "k.json", deployment("dep-m"))


@pytest.mark.parametrize(
    "content", [b"", b"{", b'{"format": "x", "agents": {"dep-a": {"key": 1}}}', b"\xff" * 10]
)
def test_a_damaged_file_of_agent_keys_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    mine = tmp_path / "agent-keys.json"
    mine.write_bytes(content)
    dep = deployment("dep-a", kind="agent", listing="tinyforge/faq-bot", model_deployment="dep-m")
    with pytest.raises(InputError) as caught:
        agent_key(mine, tmp_path / "keys.json", dep)
    assert caught.value.hint
