"""scrypt with a random 16-byte salt per user, n=2**14, r=8, p=1 (as examples/sql_app)."""

from __future__ import annotations

import hashlib
import os

N, R, P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` in hex."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"
