"""The database the app uses: ``DATABASE_URL``, or a SQLite file next to where it runs."""

from __future__ import annotations

import os

from fastpeewee import AsyncDatabase
from fastpeewee.db_url import connect

DEFAULT_URL = "sqlite:///./sql_app.db"
# Seconds /slowusers/ holds its connection, to show requests never share one.
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "2"))
# The largest request body accepted (413 beyond): the app's bodies are tiny.
MAX_BODY_BYTES = 64 * 1024


def database_from_env() -> AsyncDatabase:
    """Open (lazily) the database named by ``DATABASE_URL``; ``POOL_SIZE`` sizes its pool."""
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    options: dict[str, object] = {"pool_size": int(os.environ.get("POOL_SIZE", "10"))}
    if url.startswith("sqlite"):
        # WAL lets readers run while a request writes.
        options["pragmas"] = {"journal_mode": "wal", "foreign_keys": 1}
    return connect(url, **options)
