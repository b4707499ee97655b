"""Commits signed with an SSH key, in git's own format: what `git commit -S` writes with
`gpg.format=ssh`, so that `git verify-commit` with an allowed-signers file accepts them.

The signature is an SSHSIG block (OpenSSH's PROTOCOL.sshsig) over the commit without its
`gpgsig` header, in the namespace "git", hashed with SHA-512. Only ed25519 keys are made and
accepted: the bot's key is one, and a verifier that knows one algorithm has one to get right.

    load_private_key(path)           an OpenSSH ed25519 private key from a file
    public_line(key)                 its `ssh-ed25519 AAAA...` line, as governance.yaml holds it
    sign_commit(commit, key)         set the commit's gpgsig header
    signed_by(commit, public)        whether its gpgsig is a good signature by that key
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_ssh_private_key,
    load_ssh_public_key,
)
from dulwich.objects import Commit

from formarket.errors import InputError

__all__ = [
    "load_private_key",
    "new_key",
    "parse_public_line",
    "public_line",
    "sign",
    "sign_commit",
    "signed_by",
    "verify",
]

_MAGIC = b"SSHSIG"
_VERSION = 1
_NAMESPACE = b"git"
_HASH = b"sha512"
_KEY_TYPE = b"ssh-ed25519"
_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
_END = b"-----END SSH SIGNATURE-----"
# ssh-keygen wraps the base64 at 70 columns; a reader must not care, a writer matches it.
_WIDTH = 70


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise ValueError("truncated")
    (size,) = struct.unpack_from(">I", data, at)
    end = at + 4 + size
    if end > len(data):
        raise ValueError("truncated")
    return data[at + 4 : end], end


def _key_blob(key: Ed25519PublicKey) -> bytes:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _string(_KEY_TYPE) + _string(raw)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The OpenSSH ed25519 private key (unencrypted) in `path`."""
    try:
        key = load_ssh_private_key(path.read_bytes(), None)
    except OSError as exc:
        raise InputError(
            f"cannot read the bot's key {path}: {exc.strerror}",
            hint="FORMARKET_BOT_KEY names an OpenSSH private key file (ssh-keygen -t ed25519)",
        ) from exc
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{path} is not an unencrypted OpenSSH private key: {exc}",
            hint="make one with `ssh-keygen -t ed25519 -N '' -f PATH`",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(
            f"{path} is not an ed25519 key",
            hint="the bot signs with ed25519 only: `ssh-keygen -t ed25519 -N '' -f PATH`",
        )
    return key


def new_key(path: Path, comment: str = "formarket-bot") -> str:
    """Make an ed25519 key, write its private half to `path` (readable by its owner only, as
    ssh-keygen leaves it) and return its public line."""
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    return f"{public_line(key)} {comment}"


def public_line(key: Ed25519PrivateKey) -> str:
    """`ssh-ed25519 AAAA...`: the public half, as registry/governance.yaml names it."""
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def parse_public_line(line: str) -> Ed25519PublicKey | None:
    """An `ssh-ed25519 AAAA... [comment]` line's key; None when it is not one."""
    parts = line.split()
    if len(parts) < 2 or parts[0] != _KEY_TYPE.decode():
        return None
    try:
        key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def _signed_data(message: bytes) -> bytes:
    digest = hashlib.sha512(message).digest()
    return _MAGIC + _string(_NAMESPACE) + _string(b"") + _string(_HASH) + _string(digest)


def sign(message: bytes, key: Ed25519PrivateKey) -> bytes:
    """The armored SSHSIG signature of `message` in the namespace "git"."""
    signature = key.sign(_signed_data(message))
    blob = (
        _MAGIC
        + struct.pack(">I", _VERSION)
        + _string(_key_blob(key.public_key()))
        + _string(_NAMESPACE)
        + _string(b"")
        + _string(_HASH)
        + _string(_string(_KEY_TYPE) + _string(signature))
    )
    text = base64.b64encode(blob)
    lines = [text[i : i + _WIDTH] for i in range(0, len(text), _WIDTH)]
    return b"\n".join([_BEGIN, *lines, _END]) + b"\n"


def verify(message: bytes, armored: bytes, key: Ed25519PublicKey) -> bool:
    """Whether `armored` is a good SSHSIG signature of `message` by `key`, namespace "git"."""
    text = armored.strip()
    if not text.startswith(_BEGIN) or not text.endswith(_END):
        return False
    try:
        blob = base64.b64decode(b"".join(text[len(_BEGIN) : -len(_END)].split()), validate=True)
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
            return False
        (version,) = struct.unpack_from(">I", blob, len(_MAGIC))
        at = len(_MAGIC) + 4
        public, at = _read_string(blob, at)
        namespace, at = _read_string(blob, at)
        _reserved, at = _read_string(blob, at)
        hash_name, at = _read_string(blob, at)
        wrapped, at = _read_string(blob, at)
        kind, inner = _read_string(wrapped, 0)
        raw, inner = _read_string(wrapped, inner)
    except ValueError:
        return False
    if (
        version != _VERSION
        or at != len(blob)
        or inner != len(wrapped)
        or public != _key_blob(key)
        or namespace != _NAMESPACE
        or hash_name != _HASH
        or kind != _KEY_TYPE
    ):
        return False
    try:
        key.verify(raw, _signed_data(message))
    except InvalidSignature:
        return False
    return True


def sign_commit(commit: Commit, key: Ed25519PrivateKey) -> None:
    """Sign `commit` (every other field set) in its gpgsig header."""
    commit.gpgsig = None
    commit.gpgsig = sign(commit.raw_without_sig(), key)


def signed_by(commit: Commit, key: Ed25519PublicKey) -> bool:
    """Whether the commit carries a good signature by `key` over everything else it holds."""
    armored = commit.gpgsig
    if not armored:
        return False
    return verify(commit.raw_without_sig(), armored, key)
