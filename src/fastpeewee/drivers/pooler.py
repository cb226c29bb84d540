"""Statements a transaction pooler (PgBouncer ``pool_mode = transaction``) cannot carry.

Behind a transaction pooler a client connection owns a server session only
for the length of one transaction; between transactions the pooler hands the
session to another client. Closing the client connection (what fastpeewee
does with a connection whose session changed, see
:mod:`fastpeewee.drivers.session`) does not end the server session. So
whatever outlives a transaction there reaches other clients: a session
``SET``, a temporary table, a session advisory lock, ``LISTEN``, a
``PREPARE``d statement, a cursor ``WITH HOLD``.

A database created with ``pooler="transaction"`` refuses such statements
*before they are sent*, with :class:`PoolerRefused` naming the way out
(``SET LOCAL``, a transaction, ``pg_advisory_xact_lock``, ``ON COMMIT DROP``).
The test reuses :func:`~fastpeewee.drivers.session.changes_session` as its
first, cached filter: a statement that leaves nothing on the session is never
looked at again.

Closing an asyncpg connection never cuts short a cancel request it is still
sending (:meth:`PooledAsyncpgConnection.close`): PgBouncer 1.18 exits when a
client closes a CancelRequest's socket while PgBouncer still forwards that
cancel to PostgreSQL (``FATAL ... disconnect_client(): bad client state: 0``,
pgbouncer/pgbouncer#801, fixed in 1.19.1 by #846).
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

import peewee

from ..contracts import asyncpg as contract
from .postgres import AsyncpgConnection, PsycopgConnection
from .session import CACHED_LENGTH, changes_session

__all__ = [
    "POOLER_MODES",
    "POOLER_SETTINGS",
    "PooledAsyncpgConnection",
    "PooledPsycopgConnection",
    "PoolerRefused",
    "check_pooler",
    "check_pooler_settings",
    "let_cancels_finish",
    "pooler_refusal",
]

# The pooler modes a database may be told about (PgBouncer's pool_mode values
# that change what a client may do).
POOLER_MODES = ("transaction",)


class PoolerRefused(peewee.ProgrammingError):
    """A statement would leave state on a server session that a transaction pooler
    hands on to other clients; it was not sent."""


def check_pooler(pooler: str | None) -> str | None:
    """Validate a ``pooler=`` setting: None (a direct connection) or ``"transaction"``."""
    if pooler is None or pooler in POOLER_MODES:
        return pooler
    known = ", ".join(repr(mode) for mode in POOLER_MODES)
    raise ValueError(
        f"pooler={pooler!r} is not supported; use pooler={known} behind PgBouncer in "
        "transaction mode, or leave it out (session mode and direct connections need nothing)"
    )


# Startup settings PgBouncer passes on to the server session it lends a client
# (its tracked parameters) that libpq also takes as keywords, so both drivers
# send them as plain startup parameters. PgBouncer refuses any other startup
# parameter ("unsupported startup parameter"), psycopg's ``options`` included.
POOLER_SETTINGS = frozenset({"application_name", "client_encoding"})


def check_pooler_settings(pooler: str | None, params: dict[str, Any]) -> None:
    """Refuse, when ``pooler`` is set, connection settings a transaction pooler
    would refuse at connect time (or that would not reach the server sessions
    it lends): ``server_settings`` other than :data:`POOLER_SETTINGS`, and ``options``."""
    if pooler is None:
        return
    settings = params.get("server_settings") or {}
    refused = sorted(key for key in settings if key not in POOLER_SETTINGS)
    if params.get("options"):
        refused.append("options")
    if refused:
        raise ValueError(
            f"pooler={pooler!r}: {', '.join(refused)} cannot reach the server through a "
            "transaction pooler (PgBouncer refuses startup parameters other than "
            f"{', '.join(sorted(POOLER_SETTINGS))}, and lends each server session to many "
            "clients): set it on the server for the role or database (ALTER ROLE app SET "
            "statement_timeout = '5s'), or per transaction with SET LOCAL"
        )


# -- the test ------------------------------------------------------------------

_LEADING_COMMENTS = re.compile(r"(\s|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)
_WORDS = re.compile(r"[A-Za-z_]+")
_TRANSACTION_SET = re.compile(r"SET\s+(LOCAL|TRANSACTION|CONSTRAINTS)\b", re.IGNORECASE)
_TEMP_OBJECT = re.compile(
    r"CREATE\s+(OR\s+REPLACE\s+)?(((GLOBAL|LOCAL)\s+)?TEMP(ORARY)?\s+(\w+)"
    r"|(UNLOGGED\s+)?(TABLE)\s+(IF\s+NOT\s+EXISTS\s+)?\"?pg_temp\"?\s*\.)",
    re.IGNORECASE,
)
_ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.IGNORECASE)
_INTO_TEMP = re.compile(r"\bINTO\s+(TEMP|TEMPORARY|UNLOGGED\s+TEMP)\b", re.IGNORECASE)
_WITH_HOLD = re.compile(r"\bWITH\s+HOLD\b", re.IGNORECASE)
_SESSION_LOCK = re.compile(r"\bpg_(try_)?advisory_lock(_shared)?\s*\(", re.IGNORECASE)
_SET_CONFIG = re.compile(r"\bset_config\s*\(", re.IGNORECASE)
_DBLINK_CONNECT = re.compile(r"\bdblink_connect(_u)?\s*\(", re.IGNORECASE)
_TRUE_WORDS = frozenset({"true", "'true'", "'t'", "'on'", "'1'", "'yes'", "'y'", "true::boolean"})

_WAY_OUT = {
    "SET": "use SET LOCAL inside a transaction (async with db.atomic(): ...)",
    "set_config": "use set_config(name, value, true) or SET LOCAL inside a transaction",
    "LISTEN": "LISTEN needs a session of its own: connect to PostgreSQL directly, "
    "not through the pooler",
    "lock": "use pg_advisory_xact_lock() (or pg_try_advisory_xact_lock()) inside a "
    "transaction; it is released at COMMIT",
    "temp": "create it inside a transaction with ON COMMIT DROP "
    "(CREATE TEMP TABLE t (...) ON COMMIT DROP, or CREATE TEMP TABLE t ON COMMIT DROP "
    "AS SELECT ...)",
    "PREPARE": "send the statement with parameters instead: the drivers use unnamed "
    "statements behind a pooler",
    "HOLD": "drop WITH HOLD and read the cursor inside its transaction (or use db.iterate())",
    "dblink": "pass the connection string to dblink() itself instead of a named dblink_connect()",
}
_WHAT = {
    "SET": "a session SET stays on the server session",
    "set_config": "set_config(..., false) sets the server session",
    "LISTEN": "LISTEN stays on the server session",
    "lock": "a session advisory lock stays held by the server session",
    "temp": "a temporary object outliving its transaction stays on the server session",
    "PREPARE": "a prepared statement stays on the server session",
    "HOLD": "a cursor WITH HOLD stays open on the server session",
    "dblink": "a named dblink connection stays open on the server session",
}


def pooler_refusal(sql: str, in_transaction: bool) -> str | None:
    """Why ``sql`` cannot be sent through a transaction pooler, or None when it can.

    ``in_transaction``: whether the connection is inside a transaction when
    ``sql`` is sent (a temporary table with ``ON COMMIT DROP`` is fine there,
    and only there). Examples::

        pooler_refusal("SET LOCAL statement_timeout = 5", True)   # None
        pooler_refusal("SET statement_timeout = 5", True)         # "... use SET LOCAL ..."
        pooler_refusal("CREATE TEMP TABLE t (id int) ON COMMIT DROP", True)  # None
    """
    if not changes_session(sql):
        return None
    if len(sql) <= CACHED_LENGTH:
        kind = _cached_kind(sql, in_transaction)
    else:
        kind = _refused_kind(sql, in_transaction)
    if kind is None:
        return None
    return f"{_WHAT[kind]} and would reach the pooler's other clients; {_WAY_OUT[kind]}"


def _refused_kind(sql: str, in_transaction: bool) -> str | None:
    if _SESSION_LOCK.search(sql):
        return "lock"
    if _DBLINK_CONNECT.search(sql):
        return "dblink"
    if _sets_session_config(sql):
        return "set_config"
    for statement in sql.split(";") if ";" in sql else [sql]:
        kind, in_transaction = _statement_kind(statement, in_transaction)
        if kind is not None:
            return kind
    return None


_cached_kind = functools.lru_cache(maxsize=1024)(_refused_kind)


def _statement_kind(statement: str, in_transaction: bool) -> tuple[str | None, bool]:
    """The refusal for one statement of a script, and whether a transaction is
    open after it (a script may hold ``BEGIN; ...; COMMIT``)."""
    text = statement[_LEADING_COMMENTS.match(statement).end() :]  # type: ignore[union-attr]
    words = _WORDS.findall(text[:40])
    first = words[0].upper() if words else ""
    if first in ("BEGIN", "START"):
        return None, True
    if first in ("COMMIT", "END") or (first == "ROLLBACK" and "TO" not in _upper(words)):
        return None, False
    if first == "SET":
        return (None if _TRANSACTION_SET.match(text) else "SET"), in_transaction
    if first in ("LISTEN", "PREPARE"):
        return first, in_transaction
    if first == "DECLARE" and _WITH_HOLD.search(text):
        return "HOLD", in_transaction
    if _INTO_TEMP.search(text):
        return "temp", in_transaction
    temp = _TEMP_OBJECT.match(text)
    if temp is not None:
        table = (temp[6] or temp[8] or "").upper() == "TABLE"
        if not (table and in_transaction and _ON_COMMIT_DROP.search(text)):
            return "temp", in_transaction
    return None, in_transaction


def _upper(words: list[str]) -> list[str]:
    return [word.upper() for word in words[1:3]]


def _sets_session_config(sql: str) -> bool:
    """True when a ``set_config(name, value, is_local)`` call is not plainly local."""
    for found in _SET_CONFIG.finditer(sql):
        args = _call_arguments(sql, found.end())
        if len(args) != 3 or args[2].strip().lower() not in _TRUE_WORDS:
            return True
    return False


def _call_arguments(sql: str, start: int) -> list[str]:
    """The top-level, comma-separated arguments of the call whose ``(`` ends at ``start``."""
    depth, quoted = 0, False
    args: list[str] = []
    current: list[str] = []
    for char in sql[start:]:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            if depth == 0:
                args.append("".join(current))
                return args
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            args.append("".join(current))
            current = []
            continue
        current.append(char)
    return []  # unbalanced: not a call we can read


def _refuse(conn: Any, sql: str) -> None:
    reason = pooler_refusal(sql, conn.in_transaction())
    if reason is not None:
        raise PoolerRefused(
            f"refused by pooler='transaction' (PgBouncer transaction mode): {reason}; "
            f"not sent: {_excerpt(sql)}"
        )


def _excerpt(sql: str) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= 120 else sql[:117] + "..."


# The CancelRequests of pooled asyncpg connections closed while they were sent
# (PooledAsyncpgConnection.close); each leaves the set when it ends.
_cancels_in_flight: set[asyncio.Task[Any]] = set()


class PooledAsyncpgConnection(AsyncpgConnection):
    """An asyncpg connection through a transaction pooler: refuses what would leak,
    and never cuts its own cancel requests short."""

    __slots__ = ()

    def note(self, sql: str) -> None:
        _refuse(self, sql)
        super().note(sql)

    def close(self) -> None:
        """Close the connection, leaving the cancel requests asyncpg still sends for
        it to finish.

        A task cancelled mid-statement makes asyncpg send a CancelRequest on a
        socket of its own, from a background task, and wait until the server
        closes that socket. ``terminate()`` cancels that task, which closes the
        socket at once; PgBouncer 1.18 then exits if it was still forwarding the
        cancel to PostgreSQL (it frees the cancel's client, and frees it again
        when PostgreSQL closes the forwarded cancel: ``FATAL ...
        disconnect_client(): bad client state: 0``). fastpeewee closes such a
        connection when a stream's close is interrupted, a settle fails or the
        pool shuts down. So the cancel tasks are taken out of asyncpg's hands
        first: each ends when PgBouncer closes its socket (or at asyncpg's
        ``command_timeout``), and :meth:`~AsyncPostgresqlDatabase.close_pool`
        waits for them (:func:`let_cancels_finish`).
        """
        try:
            pending = contract.detach_cancellations(self.raw)
        finally:
            super().close()
        for task in pending:
            _cancels_in_flight.add(task)
            task.add_done_callback(_cancels_in_flight.discard)


async def let_cancels_finish(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for the cancel requests of closed pooled
    connections of the running loop to end; return how many were still running."""
    loop = asyncio.get_running_loop()
    tasks = [t for t in _cancels_in_flight if t.get_loop() is loop and not t.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    return len(tasks)


class PooledPsycopgConnection(PsycopgConnection):
    """A psycopg connection through a transaction pooler: refuses what would leak."""

    __slots__ = ()

    def note(self, sql: str) -> None:
        _refuse(self, sql)
        super().note(sql)
