"""Password hashing with the standard library's scrypt and a random salt per user."""

from __future__ import annotations

import hashlib
import hmac
import os

# scrypt cost: n=2**14, r=8, p=1 uses 16 MiB and ~50 ms per hash on a laptop core.
N, R, P = 2**14, 8, 1
SALT_BYTES = 16


def hash_password(password: str) -> str:
    """Return ``scrypt$n$r$p$salt$hash`` (hex) for ``password``."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a value made by :func:`hash_password`."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(candidate, bytes.fromhex(digest))
