"""The form of an API key, the same for the operator's keys and the accounts' keys.

A key reads `fmk_<id>_<secret>`: the id (12 hex digits) names the key in listings and logs and
finds its record; the secret is 32 random bytes, URL-safe base64. Only the SHA-256 of the
secret is stored: the secret is as random as a key can be, so a slow password hash would add
nothing but time to every call, while a leaked table still gives no one a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = ["KEY_PATTERN", "hash_secret", "new_key", "parse_key", "secret_matches"]

KEY_PATTERN = r"^fmk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$"
_KEY_RE = re.compile(KEY_PATTERN)


def parse_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    # fullmatch: `$` alone would let a trailing newline through.
    if not _KEY_RE.fullmatch(presented):
        return None
    _, key_id, secret = presented.split("_", 2)
    return key_id, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(sha256: str, secret: str) -> bool:
    return hmac.compare_digest(sha256, hash_secret(secret))


def new_key() -> tuple[str, str, str]:
    """(key, id, secret) of a fresh key."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"fmk_{key_id}_{secret}", key_id, secret
