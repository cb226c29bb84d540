"""Named locks held for a transaction, on every backend.

Several processes (the workers of one app starting at once, a migration and a
start-up) use them to take turns at one step::

    with lock(db, "fastpeewee.schema"):
        db.create_tables([User, Item])

    async with alock(db, "nightly-report"):
        await Report.acreate(...)

The block runs inside ``db.atomic()`` (a transaction, or a savepoint when one
is open) that holds the lock from before the block's first statement until its
outermost transaction ends: another holder of the same name waits, up to
``timeout`` seconds (then :class:`LockTimeout`). The lock is re-entrant within
one connection. ``db.create_tables`` and ``db.acreate_tables`` (and so every
integration's start-up lifespan) run under :data:`SCHEMA_LOCK`.

How each backend holds it:

- **PostgreSQL**: ``pg_advisory_xact_lock(key)``, ``key`` being
  :func:`lock_key` of the name (advisory keys are per database). COMMIT or
  ROLLBACK releases it, so it works through PgBouncer in transaction mode,
  where a session lock (``pg_advisory_lock``) would stay on a server
  connection that PgBouncer then hands to another client. The wait is
  bounded by ``SET LOCAL lock_timeout`` for that one statement (the previous
  value is set back after it).
- **MySQL/MariaDB**: ``GET_LOCK(name, timeout)``, where ``name`` carries the
  database's name (:func:`mysql_lock_name`: ``GET_LOCK`` names are
  server-wide). MySQL has no transaction-scoped named lock, and its DDL
  commits the transaction implicitly, which would end any row lock; a
  session lock survives those commits. The outermost block holds its
  connection, takes the lock, runs its transaction and sends
  ``RELEASE_LOCK`` after the COMMIT. A block nested in an open transaction
  leaves the lock to the end of that connection's hold: ``GET_LOCK`` marks
  the session as changed, so the pool closes the connection rather than
  reuse it, which releases the lock on the server. A statement of the block
  that is cancelled takes the lock with it at once: its connection is closed
  and its server thread killed (which rolls its work back) before the
  cancellation unwinds the block, so a ``finally`` inside the block runs
  without the lock.
- **SQLite**: ``BEGIN IMMEDIATE``, the database file's write lock, for every
  name (SQLite has one writer at a time anyway); a lock taken inside an open
  transaction is only that transaction's own (a savepoint): take it outermost.
  The wait goes in steps of the database's busy timeout (SQLite's
  ``timeout=``, 5 s by default), retried until ``timeout`` has passed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import peewee

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = [
    "DEFAULT_TIMEOUT",
    "SCHEMA_LOCK",
    "LockTimeout",
    "alock",
    "lock",
    "lock_key",
    "mysql_lock_name",
]

logger = logging.getLogger("fastpeewee.locks")

SCHEMA_LOCK = "fastpeewee.schema"
"""The lock ``create_tables``/``acreate_tables`` take (and migrations will)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds :func:`lock` and :func:`alock` wait for a lock by default."""

_PG_LOCK_NOT_AVAILABLE = "55P03"
_MYSQL_NAME_LIMIT = 64  # GET_LOCK's longest name


class LockTimeout(peewee.OperationalError):
    """A named lock was not free within its ``timeout``."""


def lock_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``name`` (BLAKE2b of its UTF-8).

    Example::

        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key("reports"),))
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def mysql_lock_name(database: str, name: str) -> str:
    """The ``GET_LOCK`` name of ``name`` in ``database``: ``"<database>.<name>"``, or
    a digest of it when that is longer than MySQL's 64 characters."""
    full = f"{database}.{name}"
    if len(full) <= _MYSQL_NAME_LIMIT:
        return full
    return "fastpeewee." + hashlib.blake2b(full.encode(), digest_size=16).hexdigest()


@contextmanager
def lock(
    db: AsyncDatabase, name: str, *, timeout: float | None = DEFAULT_TIMEOUT
) -> Iterator[None]:
    """Run the block in a transaction holding the named lock ``name`` (sync code).

    ``timeout`` seconds to wait for it (None: no bound), then :class:`LockTimeout`.
    Example::

        with lock(db, "fastpeewee.schema"):
            db.create_tables([User])
    """
    kind = _kind(db)
    with ExitStack() as stack:
        if kind == "sqlite":
            _begin_immediate(db, name, timeout, stack)
            yield
            return
        if kind == "mysql" and db.transaction_depth() == 0:
            # Held for the block, so that RELEASE_LOCK follows the COMMIT on it.
            if db.connect(reuse_if_open=True):
                stack.callback(db.close)
            stack.callback(_mysql_release, db, name)
        stack.enter_context(db.atomic())
        if kind == "postgres":
            _pg_take(db, name, timeout)
        else:
            _mysql_check(db, name, timeout, db.execute_sql(*_mysql_get(db, name, timeout)))
        yield


@asynccontextmanager
async def alock(
    db: AsyncDatabase, name: str, *, timeout: float | None = DEFAULT_TIMEOUT
) -> AsyncIterator[None]:
    """:func:`lock` for async code.

    Example::

        async with alock(db, "nightly-report"):
            ...
    """
    kind = _kind(db)
    async with AsyncExitStack() as stack:
        if kind == "sqlite":
            await _abegin_immediate(db, name, timeout, stack)
            yield
            return
        if kind == "mysql" and db.transaction_depth() == 0:
            if db.is_closed():
                await db.aconnect()
                stack.push_async_callback(db.aclose)
            stack.push_async_callback(_amysql_release, db, name)
        await stack.enter_async_context(db.atomic())
        if kind == "postgres":
            await _apg_take(db, name, timeout)
        else:
            cursor = await db.aexecute_sql(*_mysql_get(db, name, timeout))
            _mysql_check(db, name, timeout, cursor)
        yield


def _kind(db: Any) -> str:
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgres"
    if isinstance(db, peewee.MySQLDatabase):
        return "mysql"
    if isinstance(db, peewee.SqliteDatabase):
        return "sqlite"
    raise TypeError(f"no named lock for {type(db).__name__}: a fastpeewee database is needed")


def _timeout_error(db: Any, name: str, waited: float | None) -> LockTimeout:
    return LockTimeout(
        f"lock {name!r} on {type(db).__name__}({db.database!r}) not free after "
        f"{waited or 0:.2f} s: another connection holds it (a worker creating tables, "
        "a migration?); let it finish, or pass a longer timeout="
    )


# -- PostgreSQL ---------------------------------------------------------------------


def _pg_statements(name: str, timeout: float | None, previous: str) -> list[str]:
    """SET LOCAL the wait's bound, take the lock, SET LOCAL the previous bound back."""
    take = f"SELECT pg_advisory_xact_lock({lock_key(name)})"
    if timeout is None:
        return [take]
    bound = f"SET LOCAL lock_timeout = '{max(1, round(timeout * 1000))}ms'"
    back = "SET LOCAL lock_timeout = '{}'".format(previous.replace("'", "''"))
    return [bound, take, back]


def _pg_timed_out(exc: BaseException) -> bool:
    while exc is not None:
        if getattr(exc, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def _pg_take(db: Any, name: str, timeout: float | None) -> None:
    previous = db.execute_sql("SHOW lock_timeout").fetchone()[0] if timeout is not None else ""
    try:
        for sql in _pg_statements(name, timeout, previous):
            db.execute_sql(sql)
    except peewee.DatabaseError as exc:
        if _pg_timed_out(exc):
            raise _timeout_error(db, name, timeout) from exc
        raise


async def _apg_take(db: Any, name: str, timeout: float | None) -> None:
    previous = ""
    if timeout is not None:
        previous = (await db.aexecute_sql("SHOW lock_timeout")).fetchone()[0]
    try:
        for sql in _pg_statements(name, timeout, previous):
            await db.aexecute_sql(sql)
    except peewee.DatabaseError as exc:
        if _pg_timed_out(exc):
            raise _timeout_error(db, name, timeout) from exc
        raise


# -- MySQL / MariaDB ----------------------------------------------------------------


def _mysql_get(db: Any, name: str, timeout: float | None) -> tuple[str, tuple[Any, ...]]:
    # A negative timeout waits for ever; MySQL 5.7 takes whole seconds only.
    seconds = -1 if timeout is None else max(0, int(timeout + 0.999))
    return "SELECT GET_LOCK(%s, %s)", (mysql_lock_name(db.database, name), seconds)


def _mysql_check(db: Any, name: str, timeout: float | None, cursor: Any) -> None:
    got = cursor.fetchone()[0]
    if got == 1:
        return
    if got == 0:
        raise _timeout_error(db, name, timeout)
    raise peewee.OperationalError(f"GET_LOCK({name!r}) failed on the server (it returned NULL)")


def _mysql_release(db: Any, name: str) -> None:
    # After the outermost transaction, on its connection. A failure leaves it to
    # the connection's close (GET_LOCK changed its session: it is not reused).
    if not db.is_closed():
        try:
            db.execute_sql("SELECT RELEASE_LOCK(%s)", (mysql_lock_name(db.database, name),))
        except peewee.DatabaseError:
            logger.warning("RELEASE_LOCK(%r) failed", name, exc_info=True)


async def _amysql_release(db: Any, name: str) -> None:
    if not db.is_closed():
        try:
            sql = "SELECT RELEASE_LOCK(%s)"
            await db.aexecute_sql(sql, (mysql_lock_name(db.database, name),))
        except peewee.DatabaseError:
            logger.warning("RELEASE_LOCK(%r) failed", name, exc_info=True)


# -- SQLite -------------------------------------------------------------------------


def _sqlite_locked(exc: BaseException) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _begin_immediate(db: Any, name: str, timeout: float | None, stack: ExitStack) -> None:
    """Enter ``BEGIN IMMEDIATE`` (a savepoint inside an open transaction), retrying
    past SQLite's own busy timeout until ``timeout``."""
    if db.transaction_depth():
        stack.enter_context(db.atomic())
        return
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    while True:
        try:
            stack.enter_context(db.atomic(lock_type="IMMEDIATE"))
            return
        except peewee.OperationalError as exc:
            if not _sqlite_locked(exc):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise _timeout_error(db, name, time.monotonic() - started) from exc


async def _abegin_immediate(
    db: Any, name: str, timeout: float | None, stack: AsyncExitStack
) -> None:
    if db.transaction_depth():
        await stack.enter_async_context(db.atomic())
        return
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    while True:
        try:
            await stack.enter_async_context(db.atomic(lock_type="IMMEDIATE"))
            return
        except peewee.OperationalError as exc:
            if not _sqlite_locked(exc):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise _timeout_error(db, name, time.monotonic() - started) from exc
