"""What the cancellation and fault tests of the operational helpers (warm-up, ping,
named locks, migrations, retries, replicas) look at from outside the library."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastpeewee.locks import lock_key, mysql_lock_name

from ..conftest import assert_no_leaks, settle
from ..harness import Outside

#: The ``application_name`` of the PostgreSQL databases these helpers count
#: sessions of: the test PgBouncer of another module keeps idle server
#: sessions on the same database (``server_idle_timeout``), which are no
#: leak of the database under test.
TAG = "fastpeewee-under-test"


def tagged(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for a database whose sessions :func:`server_sessions` counts."""
    if backend != "postgres":
        return options
    # application_name reaches psycopg (threads); server_settings asyncpg (tasks).
    return {**options, "application_name": TAG, "server_settings": {"application_name": TAG}}


def server_sessions(outside: Outside) -> int:
    """Client sessions the server has open, the observer's own excepted (SQLite: -1).

    Every session counts, those still authenticating included: a connect
    abandoned half-way and never closed shows here, and in no pool. On
    PostgreSQL, of a database made with :func:`tagged` options, only its own
    sessions count (a shared server); otherwise all of the database's.
    """
    if outside.kind == "postgres":
        # Untagged (a server of the test's own): every session of the database.
        tag = outside.db.connect_params.get("application_name")
        rows = outside.query(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' "
            "AND ((datname = ? AND (CAST(? AS text) IS NULL OR application_name = ?)) "
            "OR datname IS NULL)",
            (outside.db.database, tag, tag),
        )
    elif outside.kind == "mysql":
        rows = outside.query(
            "SELECT count(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() "
            "AND command NOT IN ('Daemon', 'Binlog Dump') AND (db = ? OR db IS NULL) "
            "AND user NOT IN ('system user', 'event_scheduler')",
            (outside.db.database,),
        )
    else:
        return -1
    return int(rows[0][0])


def pooled(db: Any) -> int:
    """Connections the database's pools have open (or are opening)."""
    return sum(s.size for s in db.pool_stats())


async def sessions_match_pools(
    db: Any, outside: Outside, timeout: float = 5.0, killed: bool = False
) -> None:
    """Wait until the server has exactly as many sessions as the pools hold: none
    leaked outside a pool (a half-open connect), none counted that is gone.

    ``killed``: the server ended sessions behind the pools' back; idle ones are
    found dead only at their next use, so the server may have fewer."""
    await settle(db)
    assert_no_leaks(db)
    deadline = time.monotonic() + timeout
    # A connect in flight (a background replica check) counts in size only.
    while any(s.size != s.idle + s.in_use for s in db.pool_stats()):
        if time.monotonic() > deadline:
            raise AssertionError(f"pool counters disagree: {db.pool_stats()}")
        await asyncio.sleep(0.01)
    if outside.kind == "sqlite":
        return
    while True:
        found = await asyncio.to_thread(server_sessions, outside)
        if found == pooled(db) or (killed and found <= pooled(db)):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the server has {found} session(s), the pools {pooled(db)}: {db.pool_stats()}"
            )
        await asyncio.sleep(0.02)


def lock_is_free(outside: Outside, name: str) -> bool:
    """Could another connection take the named lock ``name`` now?"""
    if outside.kind == "postgres":
        # A transaction-scoped try: taken and released by this one statement.
        rows = outside.query("SELECT pg_try_advisory_xact_lock(?)", (lock_key(name),))
        return bool(rows[0][0])
    if outside.kind == "mysql":
        full = mysql_lock_name(outside.db.database, name)
        return outside.query("SELECT IS_USED_LOCK(?)", (full,))[0][0] is None
    return not outside.busy_sessions()  # SQLite: the file's write lock (BEGIN IMMEDIATE)


async def wait_lock_free(outside: Outside, name: str, timeout: float = 5.0) -> None:
    """Wait until ``name`` is free on the server (a killed holder's session may
    take a moment to end); fail when it stays held."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(lock_is_free, outside, name):
        if time.monotonic() > deadline:
            raise AssertionError(f"lock {name!r} still held on the server after {timeout} s")
        await asyncio.sleep(0.02)


def kill_all(outside: Outside) -> int:
    """Terminate every session of the database but the observer's own."""
    if outside.kind == "postgres":
        rows = outside.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ? "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (outside.db.database,),
        )
        return len(rows)
    ids = outside.query(
        "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID() "
        "AND command <> 'Daemon'",
        (outside.db.database,),
    )
    for (pid,) in ids:
        with contextlib.suppress(Exception):  # it may have ended by itself meanwhile
            outside.query(f"KILL {int(pid)}")
    return len(ids)


def columns(outside: Outside, table: str) -> set[str]:
    """The columns of ``table`` as the server's catalogue has them."""
    if outside.kind == "sqlite":
        return {row[1] for row in outside.query(f'PRAGMA table_info("{table}")')}
    schema = "'public'" if outside.kind == "postgres" else "DATABASE()"
    rows = outside.query(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = {schema} AND table_name = ?",
        (table,),
    )
    return {str(row[0]).lower() for row in rows}
