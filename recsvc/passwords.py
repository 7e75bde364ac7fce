"""Password hashes for http.auth.users: PBKDF2-SHA256, made by
`recsvc hash-password`, checked by the config and by the web's gate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64), as http.auth.users wants."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join((SCHEME, str(iterations), _b64(salt), _b64(digest)))


def decoy_hash(iterations: int = ITERATIONS) -> str:
    """A hash no password matches (a random digest), which costs as much
    to check as a real one of ``iterations``: made without hashing."""
    return "$".join((SCHEME, str(iterations), _b64(os.urandom(16)), _b64(os.urandom(32))))


def check_password_hash(hashed: str) -> tuple[int, bytes, bytes]:
    """The iterations, salt and digest of a hash. Raises ValueError."""
    parts = hashed.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"not a {SCHEME}$... hash (make one with `recsvc hash-password`)")
    try:
        iterations = int(parts[1])
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(
            parts[3], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the hash is damaged (make one with `recsvc hash-password`)") from None
    if not 1_000 <= iterations <= 10_000_000 or len(salt) < 8 or len(digest) != 32:
        raise ValueError("the hash is damaged (make one with `recsvc hash-password`)")
    return iterations, salt, digest


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``. Blocking (tens of ms)."""
    iterations, salt, digest = check_password_hash(hashed)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
