"""A cached check result counts only when this machine's own earlier run wrote it."""

from __future__ import annotations

import marshal
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from dulwich.repo import Repo
from hypothesis import given
from hypothesis import strategies as st

from formarket.errors import UsageError
from formarket.registry.cache import ResultCache, code_digest
from formarket.registry.cachekey import cache_key, seal, unseal
from formarket.registry.index import Summary
from formarket.registry.pr_check import check_pull_request

MakeRepo = Callable[..., tuple[Repo, str, str]]
TINY = "registry/models/acme/tiny-llm"

_LISTING = (Path(__file__).parents[1] / "corpus/base" / TINY / "listing.yaml").read_text()
_NEW = _LISTING.replace("version: 1.0.0", "version: 1.1.0")
# New versions with a royalty of 250%, a license that is no SPDX id, a base nobody knows.
GREEDY = {
    "REG001": {f"{TINY}/listing.yaml": _NEW.replace('"70"', '"250"')},
    "REG021": {f"{TINY}/listing.yaml": _NEW.replace("Apache-2.0", "apache-2.0")},
    "REG008": {
        f"{TINY}/listing.yaml": _NEW,
        f"{TINY}/Formfile": "NAME tiny-llm\nFROM evil-base\nVCPU 1\nMEMORY 512\nDISK 5\n",
    },
}


def _forge(path: Path, key: bytes | None) -> None:
    """Rewrite every entry of a cache file as a valid document with nothing to report, the way
    an attacker who can write the folder would: signed with `key`, or in the unsigned format
    of old (salted with the code's digest, which anyone can compute)."""
    label = b"formarket-cache-3"
    raw = path.read_bytes()
    payload = unseal(key or b"", label, raw) if key else raw[32:]
    assert payload is not None
    salt, entries = marshal.loads(payload)
    for name, value in list(entries.items()):
        if name.startswith("tree:"):
            continue  # what a folder holds, not a result
        summary, _ = value
        kind, ident, where, _, data, look = summary
        clean = Summary(kind, ident, where, True, marshal.loads(data), look).to_plain()
        entries[name] = (clean, ())
    forged = marshal.dumps((salt, entries))
    path.write_bytes(seal(key, label, forged) if key else marshal.dumps((salt, entries)))


def _errors(repo: Repo, cache: ResultCache) -> set[str]:
    """The codes reported (REG021 is a warning: the forgery hid it all the same), but the
    hint to the corpus's solution pinned to 1.0.0 that it could move to 1.1.0 (REG033), which
    no cached result decides."""
    report = check_pull_request(repo, "main", "pr", "acme-dev", cache)
    return {f.code for f in report.findings} - {"REG033"}


@pytest.mark.parametrize("code", sorted(GREEDY))
@pytest.mark.parametrize("forger", ["someone else's key", "no key (the old format)"])
def test_a_forged_cache_no_longer_passes(
    git_registry: MakeRepo, tmp_path: Path, forger: str, code: str
) -> None:
    repo, _, _ = git_registry(GREEDY[code])
    path = tmp_path / "git.cache"
    theirs = b"k" * 32 if forger.startswith("someone") else None
    # The forger fills a cache as the check would, then cleans every result.
    filled = ResultCache(path, code_digest(), key=theirs or b"x" * 32)
    assert _errors(repo, filled) == {code}
    shards = sorted(tmp_path.glob("git.cache.*"))
    assert shards
    for shard in shards:
        if theirs is None:
            opened = unseal(b"x" * 32, b"formarket-cache-3", shard.read_bytes())
            assert opened is not None
            shard.write_bytes(b"\0" * 32 + opened)
        _forge(shard, theirs)
    if theirs is not None:
        # Their forgery holds for whoever has their key: the test would see a forgery pass.
        assert code not in _errors(repo, ResultCache(path, code_digest(), key=theirs))
    assert _errors(repo, ResultCache(path, code_digest())) == {code}


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    env = {"FORMARKET_CACHE_KEY": str(tmp_path / "state" / "cache.key")}
    first = cache_key(env)
    assert first is not None
    assert len(first) >= 16
    assert cache_key(env) == first
    mode = (tmp_path / "state" / "cache.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_the_default_key_lives_in_the_users_state_folder(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert cache_key(env) is not None
    assert (tmp_path / "xdg" / "formarket" / "cache.key").is_file()


def test_a_key_others_may_change_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o666)
    with pytest.raises(UsageError):
        cache_key({"FORMARKET_CACHE_KEY": str(path)})


def test_with_no_key_to_be_had_nothing_is_kept(
    git_registry: MakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, _ = git_registry(GREEDY["REG008"])
    (tmp_path / "a-file").write_bytes(b"")
    # No folder can be made inside a file, whoever runs this.
    monkeypatch.setenv("FORMARKET_CACHE_KEY", str(tmp_path / "a-file" / "cache.key"))
    assert cache_key() is None
    cache = ResultCache(tmp_path / "git.cache", code_digest())
    assert _errors(repo, cache) == {"REG008"}
    assert not list(tmp_path.glob("git.cache*"))


def test_a_sealed_payload_opens_only_with_its_key_and_label() -> None:
    sealed = seal(b"a" * 32, b"one", b"payload")
    assert unseal(b"a" * 32, b"one", sealed) == b"payload"
    assert unseal(b"b" * 32, b"one", sealed) is None
    assert unseal(b"a" * 32, b"two", sealed) is None
    assert unseal(b"a" * 32, b"one", sealed[:-1] + b"X") is None
    assert unseal(b"a" * 32, b"one", b"short") is None


@given(st.binary(max_size=200), st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_change_to_sealed_bytes_is_refused(payload: bytes, at: int, flip: int) -> None:
    sealed = bytearray(seal(b"k" * 32, b"label", payload))
    sealed[at % len(sealed)] ^= flip
    assert unseal(b"k" * 32, b"label", bytes(sealed)) is None
