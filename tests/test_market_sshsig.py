"""The bot's commit signatures are git's own SSH signatures: `git verify-commit` accepts what
the writer signs, formarket accepts what `git commit -S` signs, and nothing else passes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from dulwich.objects import Commit
from dulwich.repo import Repo
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import InputError
from formarket.market.refs import branch_tip
from formarket.market.repository import create_repository
from formarket.market.sshsig import (
    load_private_key,
    new_key,
    parse_public_line,
    sign,
    signed_by,
    verify,
)
from formarket.market.writer import Identity, commit_changes
from formarket.process import ProcessError
from formarket.settings import BOT_KEY
from tests.gitcli import git

BOT = Identity("formarket-bot", "formarket-bot@users.noreply.github.com")


def _allowed(tmp_path: Path, public: str) -> Path:
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{BOT.email} {public}\n")
    return allowed


def test_git_verify_commit_accepts_the_writers_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "keys" / "bot"
    public = new_key(key)
    assert (key.stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv(BOT_KEY.variable, str(key))
    repo = create_repository(tmp_path / "market", branch="main")
    commit_changes(repo, "main", {"a.txt": b"one\n"}, "signed\n", BOT)
    allowed = _allowed(tmp_path, public)
    # git fails (ProcessError) unless the signature is good and by an allowed key.
    git(tmp_path / "market", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", "main")
    # Another key in the allowed file: git refuses the same commit.
    other = new_key(tmp_path / "keys" / "other")
    with pytest.raises(ProcessError):
        git(
            tmp_path / "market",
            "-c",
            f"gpg.ssh.allowedSignersFile={_allowed(tmp_path, other)}",
            "verify-commit",
            "main",
        )
    # And formarket agrees with git on both.
    commit = repo.object_store[branch_tip(repo, "main")]
    assert isinstance(commit, Commit)
    good, bad = parse_public_line(public), parse_public_line(other)
    assert good is not None
    assert bad is not None
    assert signed_by(commit, good)
    assert not signed_by(commit, bad)


def test_a_commit_signed_by_git_is_accepted(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "bot"
    public = new_key(key)
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "--initial-branch=main")
    (work / "a.txt").write_text("one\n")
    git(work, "add", "a.txt")
    git(
        work,
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingkey={key}",
        "commit",
        "--quiet",
        "-S",
        "-m",
        "signed by git",
    )
    repo = Repo(str(work))
    commit = repo.object_store[branch_tip(repo, "main")]
    assert isinstance(commit, Commit)
    assert commit.gpgsig is not None
    assert commit.gpgsig.startswith(b"-----BEGIN SSH SIGNATURE-----")
    found = parse_public_line(public)
    assert found is not None
    assert signed_by(commit, found)
    other = parse_public_line(new_key(tmp_path / "keys" / "other"))
    assert other is not None
    assert not signed_by(commit, other)


def test_an_unsigned_commit_is_not_signed_by_anyone(tmp_path: Path) -> None:
    public = parse_public_line(new_key(tmp_path / "k"))
    assert public is not None
    commit = Commit()
    commit.tree = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # type: ignore[assignment]
    commit.author = commit.committer = BOT.raw()
    commit.author_time = commit.commit_time = 0
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"x"
    assert not signed_by(commit, public)


def test_a_bad_key_file_is_an_input_error_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key"
    path.write_bytes(b"hello")
    with pytest.raises(InputError) as raised:
        load_private_key(path)
    assert raised.value.hint
    with pytest.raises(InputError):
        load_private_key(tmp_path / "missing")


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    path = tmp_path_factory.mktemp("key") / "bot"
    public = parse_public_line(new_key(path))
    return load_private_key(path), public


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(0, 10_000))
def test_any_change_to_the_message_or_the_signature_is_refused(
    signing: tuple[object, object], message: bytes, flip: int
) -> None:
    private, public = signing
    armored = sign(message, private)  # type: ignore[arg-type]
    assert verify(message, armored, public)  # type: ignore[arg-type]
    assert not verify(message + b"x", armored, public)  # type: ignore[arg-type]
    # One byte of the base64 body changed (a different valid character).
    lines = armored.split(b"\n")
    body = bytearray(b"".join(lines[1:-2]))
    at = flip % len(body)
    body[at] = ord("A") if body[at] != ord("A") else ord("B")
    tampered = lines[0] + b"\n" + bytes(body) + b"\n" + lines[-2] + b"\n"
    # A change only in the unused low bits of the last character decodes to the same bytes.
    if base64.b64decode(bytes(body)) != base64.b64decode(b"".join(lines[1:-2])):
        assert not verify(message, tampered, public)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_signature_are_refused_never_raise(
    signing: tuple[object, object], junk: bytes
) -> None:
    _, public = signing
    assert not verify(b"payload", junk, public)  # type: ignore[arg-type]
    wrapped = b"-----BEGIN SSH SIGNATURE-----\n" + junk + b"\n-----END SSH SIGNATURE-----\n"
    assert not verify(b"payload", wrapped, public)  # type: ignore[arg-type]


@given(st.text(max_size=120))
def test_any_text_as_a_public_key_is_a_key_or_none(text: str) -> None:
    found = parse_public_line(text)
    assert found is None or text.split()[0] == "ssh-ed25519"
