"""PostgreSQL driver adapters: asyncpg for tasks, psycopg 3 for threads (autocommit).

:class:`AsyncpgConnection` rewrites psycopg's ``%s`` placeholders for asyncpg,
unwraps psycopg's JSON wrappers, reads the rowcount from the command tag and
runs COPY; its one private asyncpg call lives in
:mod:`fastpeewee.contracts.asyncpg`.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from ..contracts import asyncpg as contract
from ..cursor import Cursor, StreamCursor
from ..errors import translate_errors
from .base import (
    Connection,
    Params,
    TransportWatch,
    close_in_loop,
    import_driver,
    readable,
    writable,
)
from .retry import NotSent

__all__ = ["AsyncpgConnection", "PsycopgConnection", "connect_asyncpg", "connect_psycopg"]

_PLAIN_TYPES = frozenset({int, str, float, bool, type(None), bytes})


def to_dollar_params(sql: str) -> str:
    """Rewrite psycopg-style ``%s`` placeholders as asyncpg's ``$1, $2, ...``.

    ``%%`` becomes a literal ``%``, as psycopg reads it. Short statements are
    cached; long ones (multi-row INSERTs) are rewritten each time, so the
    cache never holds megabytes of SQL.
    """
    if len(sql) <= 4096:
        return _cached_dollar_params(sql)
    return _dollar_params(sql)


def _dollar_params(sql: str) -> str:
    if "%" not in sql:
        return sql
    counter = itertools.count(1)
    return re.sub(r"%%|%s", lambda m: "%" if m[0] == "%%" else f"${next(counter)}", sql)


_cached_dollar_params = functools.lru_cache(maxsize=2048)(_dollar_params)


def _adapt(params: Params) -> Sequence[Any]:
    """Unwrap psycopg's parameter wrappers (``Jsonb``, ``Json``) for asyncpg."""
    for value in params:
        if type(value) not in _PLAIN_TYPES:
            break
    else:
        return params
    return [_adapt_one(v) for v in params]


def _adapt_one(value: Any) -> Any:
    if type(value).__name__ in ("Json", "Jsonb"):  # psycopg's wrappers, JSON null included
        return json.dumps(value.obj)
    return value


def _json_text(value: Any) -> str:
    """Encode a JSON parameter: text passes through, anything else is dumped."""
    return value if isinstance(value, str) else json.dumps(value)


def _rowcount(status: bytes | None, rows: int) -> int:
    """asyncpg reports no rowcount; read it from the command tag ("UPDATE 3")."""
    if status:
        count = _tag_count(status)
        if count >= 0:
            return count
    return rows


@functools.lru_cache(maxsize=1024)
def _tag_count(status: bytes) -> int:
    """The row count a command tag ends with, or -1 (cached: a few tags make up
    most statements' answers, "SELECT 1", "INSERT 0 1", "UPDATE 1")."""
    tail = status.rsplit(b" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class _RecordsCursor(Cursor):
    """The result of a statement that returned asyncpg records. Its description
    (the column names) is read off the first record only when asked for: the
    readers of most statements (an insert's returned key, a write's row count)
    never ask."""

    __slots__ = ("_described", "_first")

    def __init__(self, rows: Sequence[Any], rowcount: int) -> None:
        self._rows = rows
        self._index = 0
        self.rowcount = rowcount
        self.lastrowid = None
        self._first = rows[0]  # kept: close() drops the rows
        self._described: Sequence[Sequence[Any]] | None = None

    @property
    def description(self) -> Sequence[Sequence[Any]] | None:
        described = self._described
        if described is None:
            described = self._described = [(key,) for key in self._first.keys()]  # noqa: SIM118
        return described

    @description.setter
    def description(self, value: Sequence[Sequence[Any]] | None) -> None:
        self._described = value


class AsyncpgConnection(Connection):
    """An asyncpg connection (tasks only)."""

    __slots__ = ("_execute", "_watch")

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self._watch = TransportWatch(contract.transport(raw))
        self._execute = contract.executor(raw)

    def usable(self) -> bool:
        return not self.raw.is_closed()

    def usable_idle(self) -> bool:
        # asyncpg learns that the server ended the session only when the loop
        # reads the FATAL and, a few ms later, the close. Either may still wait
        # unread in the socket when the pool hands the connection out (the loop
        # was busy): one poll catches that. A FATAL already read but not yet
        # followed by the close leaves asyncpg refusing every command before
        # sending it, with no public sign: see fastpeewee.drivers.retry.
        return self.usable() and not self._watch.readable()

    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    def close(self) -> None:
        close_in_loop(self.raw.terminate, contract.transport(self.raw))

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        if params:
            sql = to_dollar_params(sql)
            params = _adapt(params)
        # Rows and status in one round trip: see fastpeewee.contracts.asyncpg.
        try:
            rows, status, _ = await self._execute(sql, params)
        except Exception as exc:
            _check_refused(exc)
            if params or "multiple commands" not in str(exc):
                raise
            # A script of several statements: the simple protocol runs it (no rows).
            status = (await self.raw.execute(sql)).encode()
            return Cursor((), _rowcount(status, 0))
        if rows:
            return _RecordsCursor(rows, _rowcount(status, len(rows)))
        return Cursor(rows, _rowcount(status, 0))

    async def aping(self) -> None:
        try:
            await self.raw.execute("SELECT 1")
        except Exception as exc:
            _check_refused(exc)  # a session the server ended: NotSent, a lost link
            raise

    async def acopy(
        self, table: str, columns: list[str], records: Iterable[Params], schema: str | None
    ) -> Cursor:
        """Binary COPY of ``records`` into ``table``."""
        try:
            status = await self.raw.copy_records_to_table(
                table, records=records, columns=columns, schema_name=schema
            )
        except Exception as exc:
            _check_refused(exc)
            raise
        return Cursor((), _rowcount(status.encode(), -1))

    async def arollback(self) -> None:
        await self.raw.execute("ROLLBACK")

    async def asettle(self) -> None:
        # asyncpg queues the next command behind the cancellation of an
        # interrupted one, and its transaction flag is only as new as the last
        # reply: a ROLLBACK both waits for the server and ends whatever the
        # interrupted statement began (a mere warning when nothing did).
        await self.raw.execute("ROLLBACK")

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        if params:
            sql = to_dollar_params(sql)
            params = _adapt(params)
        raw = self.raw
        # Server-side cursors live inside a transaction; open one if needed.
        own_txn = not raw.is_in_transaction()
        try:
            if own_txn:
                await raw.execute("BEGIN")
            try:
                stmt = await raw.prepare(sql)
                cur = await stmt.cursor(*params)
            except BaseException:
                if own_txn and not raw.is_closed():
                    await raw.execute("ROLLBACK")
                raise
        except Exception as exc:
            _check_refused(exc)
            raise

        async def cleanup() -> None:
            if own_txn and not raw.is_closed():
                await raw.execute("ROLLBACK")

        description = [(attr.name,) for attr in stmt.get_attributes()]
        return StreamCursor(cur.fetch, cleanup, description, batch_size)


def _check_refused(exc: Exception) -> None:
    """Raise :class:`~fastpeewee.drivers.retry.NotSent` (from ``exc``) when asyncpg refused a
    command because the server had ended the session.

    asyncpg reads PostgreSQL's FATAL ("terminating connection") as soon as it
    arrives; read while idle, it sends the protocol into its error-consuming
    state (PROTOCOL_ERROR_CONSUME, 2), to wait for a ReadyForQuery that never
    comes. Until the close arrives, a few ms later, the connection looks open,
    and every command fails in ``CoreProtocol._set_state()`` *before* anything
    is written, as an ``InternalClientError`` that peewee would call an
    InternalError. It is a lost link, and nothing was sent.
    """
    if contract.refused_before_sending(exc):
        raise NotSent(
            "the server ended this session (asyncpg had read its FATAL message; "
            "the close had not arrived yet): the statement was not sent"
        ) from exc


def _ping_within(pgconn: Any, timeout: float) -> None:
    """``SELECT 1`` through libpq's non-blocking calls, waiting at most ``timeout`` s.

    psycopg waits for a reply without any bound, and ``statement_timeout``
    cannot help when the server never gets the query (a link black-holed by a
    NAT): only a bounded wait on the socket can.
    """
    deadline = time.monotonic() + timeout
    fd = pgconn.socket
    pgconn.send_query(b"SELECT 1")
    while pgconn.flush():  # psycopg's connections are non-blocking: 1 = more to send
        _wait(fd, deadline, write=True)
    pgconn.consume_input()
    while pgconn.is_busy():
        _wait(fd, deadline)
        pgconn.consume_input()
    failure = None
    while (result := pgconn.get_result()) is not None:
        if result.error_message:
            failure = result.error_message
    if failure:
        raise peewee.OperationalError(failure.decode(errors="replace").strip())


def _wait(fd: int, deadline: float, write: bool = False) -> None:
    remaining = deadline - time.monotonic()
    ready = writable if write else readable
    if remaining <= 0 or not ready(fd, remaining):
        raise TimeoutError("no answer to the liveness ping within its timeout")


class PsycopgConnection(Connection):
    """A psycopg 3 connection in autocommit mode (threads only)."""

    __slots__ = ()

    def usable(self) -> bool:
        raw = self.raw
        if raw.closed or raw.broken:
            return False
        # An idle connection has nothing to read, unless the server closed it
        # (a FATAL notice then EOF): one poll syscall, no round trip.
        if raw.info.transaction_status == 0:
            return not readable(raw.fileno())
        return True

    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return bool(status != 0 and status != 4)  # 0 IDLE, 4 UNKNOWN (link lost)

    def close(self) -> None:
        self.raw.close()

    def ping(self, timeout: float) -> None:
        _ping_within(self.raw.pgconn, timeout)

    def execute(self, sql: str, params: Params) -> Cursor:
        cur = self.raw.execute(sql, params or None)
        try:
            description = cur.description
            rows = cur.fetchall() if description else []
            return Cursor(rows, cur.rowcount, None, description)
        finally:
            cur.close()


def connect_psycopg(
    params: dict[str, Any], wrapper: type[PsycopgConnection] = PsycopgConnection
) -> PsycopgConnection:
    """Open a psycopg connection in autocommit mode (transactions are explicit SQL),
    wrapped in ``wrapper``."""
    psycopg = import_driver("psycopg", "postgres")
    with translate_errors():
        return wrapper(psycopg.connect(autocommit=True, **params))


async def connect_asyncpg(
    params: dict[str, Any], wrapper: type[AsyncpgConnection] = AsyncpgConnection
) -> AsyncpgConnection:
    """Open an asyncpg connection that decodes JSON to Python values, as psycopg does,
    wrapped in ``wrapper``."""
    asyncpg = import_driver("asyncpg", "postgres")
    with translate_errors():
        contract.check(asyncpg.Connection)
        raw = await asyncpg.connect(**params)
        try:
            for json_type in ("json", "jsonb"):
                await raw.set_type_codec(
                    json_type, schema="pg_catalog", encoder=_json_text, decoder=json.loads
                )
        except BaseException:
            raw.terminate()  # opened but not set up (cancelled, timed out): never leak it
            raise
    return wrapper(raw)
