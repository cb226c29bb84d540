"""MySQL and MariaDB driver adapters: asyncmy for tasks, PyMySQL for threads.

Both drivers speak the text protocol with client-side ``%s`` interpolation,
in autocommit mode (peewee sends ``BEGIN`` itself), with ``utf8mb4`` text.
asyncmy was chosen over aiomysql by measurement (see the README): it is
written in Cython and answers a primary-key get about twice, a 100-row
select about four times as fast.

A statement cancelled mid-flight leaves its connection out of step with the
server (the reply is still on its way), so the connection is closed and the
statement is killed from a short-lived side connection: the server stops it
at once, and rolls back the transaction it ran in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import peewee

from ..cursor import Cursor, StreamCursor
from ..errors import translate_errors
from .base import (
    Connection,
    Params,
    TransportWatch,
    cancel_requests,
    close_in_loop,
    import_driver,
    readable,
)

__all__ = [
    "AsyncmyConnection",
    "MySQLConnection",
    "PyMySQLConnection",
    "connect_asyncmy",
    "connect_pymysql",
    "kill_thread",
]

logger = logging.getLogger("fastpeewee.mysql")

# The server status bit "a transaction is open" (SERVER_STATUS_IN_TRANS).
_IN_TRANS = 1
# Client and server error codes that mean the link is gone: CR_SERVER_GONE_ERROR,
# CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED
# (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8).
_LINK_GONE = frozenset({2006, 2013, 2055, 1053, 1927, 4031})
# ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back.
_DEADLOCK = 1213
# Bound on the side connection that kills a cancelled statement (or
# acquire_timeout, when shorter).
KILL_TIMEOUT = 5.0


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error (or of the one a peewee error wraps)."""
    cause = exc.__cause__ if isinstance(exc, peewee.PeeweeException) else exc
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


# executemany: the drivers' own pattern of an INSERT whose VALUES row they repeat.
_INSERT_VALUES = re.compile(
    r"\s*((?:INSERT|REPLACE)\b.+\bVALUES?\s*)"
    r"(\(\s*(?:%s|%\(.+\)s)\s*(?:,\s*(?:%s|%\(.+\)s)\s*)*\))"
    r"(\s*(?:(?:AS|ON DUPLICATE).*)?);?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)
_COLLECTORS: dict[type, type] = {}
MANY_STATEMENT_BYTES = 1_024_000
"""Size bound of each statement an executemany sends: both drivers' default
``max_stmt_length``, well under any server's ``max_allowed_packet``."""


def _collector(base: type) -> type:
    """A subclass of the driver's cursor class whose ``execute`` keeps the statements
    the driver's executemany builds (multi-row INSERTs under its statement size
    limit) instead of sending them."""
    found = _COLLECTORS.get(base)
    if found is None:
        if base.__module__.startswith("asyncmy"):

            class AsyncCollector(base):  # type: ignore[misc]
                async def execute(self, query: Any, args: Any = None) -> int:
                    self.chunks.append(query)
                    return 0

            found = AsyncCollector
        else:

            class Collector(base):  # type: ignore[misc]
                def execute(self, query: Any, args: Any = None) -> int:
                    self.chunks.append(query)
                    return 0

            found = Collector
        _COLLECTORS[base] = found
    return found


BULK_MIN_ROWS = 500
"""Fewest rows for MariaDB's binary bulk insert: below, its extra round trips
(prepare, and a transaction around it) cost more than the escaping it saves."""
_NONE = type(None)
_BULK_KINDS = ({int}, {str})


def _bulk_groups(sql: str, rows: Sequence[Params], limit: int) -> list[Sequence[Params]] | None:
    """``rows`` in groups of at most about ``limit`` bytes for COM_STMT_BULK_EXECUTE,
    or None when the text protocol must carry them.

    Only columns of plain ``int`` or ``str`` values (and NULLs) go in binary
    form: the server then stores exactly what the text protocol's literals
    give. A string counts four bytes a character unless its column is ASCII.
    """
    if "?" in sql or _many_parts(sql) is None:
        return None  # a ``?`` in a name would be taken for a placeholder
    try:
        columns = list(zip(*rows, strict=True))
    except ValueError:
        return None
    if not columns:
        return None
    fixed = 9 * len(columns)  # indicator and length prefix, or an 8-byte integer
    total = fixed * len(rows)
    texts = []
    for column in columns:
        kinds = set(map(type, column))
        nulls = _NONE in kinds
        kinds.discard(_NONE)
        if kinds not in _BULK_KINDS:
            return None
        if str in kinds:
            given = [v for v in column if v is not None] if nulls else column
            factor = 1 if all(map(str.isascii, given)) else 4
            texts.append((column, nulls, factor))
            total += factor * sum(map(len, given))
    if total <= limit:
        return [rows]
    if not texts:
        step = max(1, limit // fixed)
        return [rows[i : i + step] for i in range(0, len(rows), step)]
    lengths = [
        [0 if v is None else len(v) * factor for v in column]
        if nulls or factor > 1
        else map(len, column)
        for column, nulls, factor in texts
    ]
    groups: list[Sequence[Params]] = []
    start = total = 0
    for index, size in enumerate(map(sum, zip(*lengths, strict=True))):
        size += fixed
        if total + size > limit and index > start:
            groups.append(rows[start:index])
            start, total = index, 0
        total += size
    groups.append(rows[start:])
    return groups


def _many_parts(sql: str) -> tuple[str, str, str] | None:
    """``INSERT ... VALUES``, its ``(%s, ...)`` row and what follows, as the drivers split it."""
    m = _INSERT_VALUES.match(sql)
    if m is None:
        return None
    return m.group(1) % (), m.group(2).rstrip(), m.group(3) or ""


# Around the statements of an executemany that took more than one: all or none.
_MANY_OWN = (b"BEGIN", b"COMMIT", b"ROLLBACK")
_MANY_NESTED = (
    b"SAVEPOINT fastpeewee_many",
    b"RELEASE SAVEPOINT fastpeewee_many",
    b"ROLLBACK TO SAVEPOINT fastpeewee_many",
)


def _link_gone(exc: BaseException) -> bool:
    """True for a driver error saying the server connection is lost or killed."""
    return error_code(exc) in _LINK_GONE


class MySQLConnection(Connection):
    """What the asyncmy and PyMySQL connections share: transaction status, error triage."""

    __slots__ = ("_rolled_back",)
    # MySQL commits the open transaction before DDL and a few other statements.
    implicit_commits = True

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        # The server rolled the transaction back with an error (a deadlock);
        # error replies carry no status flags, so remember it until the next reply.
        self._rolled_back = False

    def in_transaction(self) -> bool:
        return not self._rolled_back and bool(self.raw.server_status & _IN_TRANS) and self.usable()

    def after_error(self, exc: BaseException) -> None:
        if error_code(exc) == _DEADLOCK:
            self._rolled_back = True
        # Cancelled: the reply may still be on its way; never reuse.
        if isinstance(exc, asyncio.CancelledError) or _link_gone(exc):
            self.broken = True
        super().after_error(exc)  # timed out, or no longer usable

    def _result(self, cur: Any, rows: Sequence[Any]) -> Cursor:
        self._rolled_back = False
        return Cursor(rows, cur.rowcount, cur.lastrowid, cur.description)

    def _many_brackets(self) -> tuple[bytes, bytes, bytes]:
        """Begin, end and undo for statements that must land all or none."""
        return _MANY_NESTED if self.in_transaction() else _MANY_OWN


class AsyncmyConnection(MySQLConnection):
    """An asyncmy connection (tasks only)."""

    __slots__ = ("_killer", "_watch", "bulk_binary", "late_cancels")

    def __init__(self, raw: Any, killer: Callable[[int], Awaitable[None]]) -> None:
        super().__init__(raw)
        self._watch = TransportWatch(raw._transport)
        self._killer = killer  # KILLs a server thread from a side connection
        # Big inserts as MariaDB binary bulk statements (AsyncMySQLDatabase's
        # bulk_binary): faster, but auto-increment ids then skip a few.
        self.bulk_binary = False
        # With read_timeout=, asyncmy reads through asyncio.wait_for, which on
        # Python 3.11 can return a reply although the task was cancelled
        # meanwhile: such cancellations are counted and raised (_raise_late).
        self.late_cancels = False

    def usable(self) -> bool:
        raw = self.raw
        # asyncmy notes the server's EOF or a transport error at once, without
        # I/O; its flag for that has no public name.
        return bool(raw.connected) and not getattr(raw, "_stream_broken", False)

    def usable_idle(self) -> bool:
        # An idle connection has nothing to read, unless the server spoke
        # unasked: an error packet before it closes the link (MySQL 8's
        # ER_CLIENT_INTERACTION_TIMEOUT), or the close itself, still in the
        # socket when the loop was busy. Sending a statement on it would only
        # read that reply and fail with 2013, the statement's fate unknown.
        if not self.usable():
            return False
        proto = self.raw._proto  # asyncmy's receive buffer: what the loop read
        return proto.length == proto.pos and not self._watch.readable()

    def close(self) -> None:
        close_in_loop(self.raw.close, self.raw._transport)

    def _raise_late(self, asked: int) -> None:
        """Raise the cancellation asyncmy's ``wait_for`` swallowed since ``asked``."""
        if asked >= 0 and cancel_requests() > asked:
            raise asyncio.CancelledError

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        asked = cancel_requests() if self.late_cancels else -1
        cur = self.raw.cursor()
        try:
            await cur.execute(sql, params or None)
            rows = await cur.fetchall() if cur.description else ()
            self._raise_late(asked)
            return self._result(cur, rows)
        except asyncio.CancelledError:
            await self._abandon()
            raise
        finally:
            if self.raw.connected:
                await cur.close()

    async def aexecutemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """``sql`` for every row as asyncmy's executemany sends it: multi-row
        INSERTs under its statement size limit (1 MB), escaped by its C code.

        One statement when they fit, as peewee's own multi-row INSERT would be;
        more run inside a transaction (a savepoint when one is open), so the
        insert stays all or nothing. The cursor carries the total row count and
        the first statement's insert id (MySQL's id of the first row). With
        :attr:`bulk_binary`, big inserts go as MariaDB binary bulk statements.
        """
        asked = cancel_requests() if self.late_cancels else -1
        if (
            self.bulk_binary
            and len(rows) >= BULK_MIN_ROWS
            and getattr(self.raw, "_bulk_supported", False)
        ):
            groups = _bulk_groups(sql, rows, MANY_STATEMENT_BYTES)
            if groups is not None:
                done = await self._abulk(sql, groups, asked)
                if done is not None:
                    return done
        chunks = await self._chunks(sql, rows)
        cur = self.raw.cursor()

        async def run(chunk: Any) -> tuple[int, Any]:
            await cur.execute(chunk)
            return cur.rowcount, cur.lastrowid

        try:
            if len(chunks) == 1:
                count, first = await run(chunks[0])
                self._raise_late(asked)
                self._rolled_back = False
                return Cursor((), count, first, None)
            return await self._bracketed(cur, chunks, run, asked)
        except asyncio.CancelledError:
            await self._abandon()
            raise
        finally:
            if self.raw.connected:
                await cur.close()

    async def _abulk(self, sql: str, groups: list[Sequence[Params]], asked: int) -> Cursor | None:
        """MariaDB's COM_STMT_BULK_EXECUTE: each group of rows bound in binary form
        to one prepared INSERT, one round trip per group, no escaping; inside a
        transaction (a savepoint when one is open). None, nothing left behind,
        when asyncmy finds a group it cannot send (a column NULL throughout)."""
        parts = _many_parts(sql)
        assert parts is not None  # _bulk_groups checked
        prefix, values, postfix = parts
        cur = self.raw.cursor()
        try:
            stmt = await self.raw.prepare(prefix + values.replace("%s", "?") + postfix)

            async def run(group: Sequence[Params]) -> tuple[int, Any]:
                result = await stmt.execute_bulk(group)
                return result.affected_rows, result.insert_id

            try:
                return await self._bracketed(cur, groups, run, asked)
            except ValueError:  # raised before any I/O; the brackets were undone
                return None
            finally:
                if self.raw.connected:
                    await stmt.close()
        except asyncio.CancelledError:
            await self._abandon()
            raise
        finally:
            if self.raw.connected:
                await cur.close()

    async def _bracketed(
        self,
        cur: Any,
        parts: Sequence[Any],
        run: Callable[[Any], Awaitable[tuple[int, Any]]],
        asked: int,
    ) -> Cursor:
        """``run`` each part between a BEGIN (a SAVEPOINT inside a transaction) and
        its COMMIT, undone when one fails: all or nothing. The cursor carries the
        total row count and the first part's insert id."""
        begin, end, undo = self._many_brackets()
        await cur.execute(begin)
        count, first = 0, None
        try:
            for part in parts:
                rows, insert_id = await run(part)
                self._raise_late(asked)  # before END: nothing committed
                count += rows
                first = insert_id if first is None else first
        except Exception:
            if self.usable():
                with contextlib.suppress(Exception):
                    await cur.execute(undo)
            raise
        await cur.execute(end)
        self._raise_late(asked)
        self._rolled_back = False
        return Cursor((), count, first, None)

    async def _chunks(self, sql: str, rows: Sequence[Params]) -> list[Any]:
        """The statements asyncmy's executemany would send for ``rows``."""
        base = import_driver("asyncmy", "mysql").cursors.Cursor
        collector = self.raw.cursor(_collector(base))
        collector.chunks = []
        parts = _many_parts(sql)
        if parts is None:  # not one INSERT ... VALUES: one statement per row
            return [collector.mogrify(sql, row) for row in rows]
        prefix, values, postfix = parts
        encoding = self.raw._encoding
        limit = MANY_STATEMENT_BYTES
        await collector._do_execute_many(prefix, values, postfix, rows, limit, encoding)
        chunks: list[Any] = collector.chunks
        return chunks

    async def _abandon(self) -> None:
        """Drop a connection whose statement was cancelled, and kill the statement.

        The reply may still be on its way, so the connection cannot be reused;
        the server would run the statement to its end (and keep its locks) if
        nobody told it to stop.
        """
        self.broken = True
        thread_id = self.raw.thread_id()
        self.close()
        kill = asyncio.ensure_future(self._killer(thread_id))
        while not kill.done():
            try:
                await asyncio.wait([kill])
            except asyncio.CancelledError:
                continue  # the kill has its own bound: let it finish
        if not kill.cancelled() and kill.exception() is not None:
            logger.warning(
                "could not kill cancelled statement %d", thread_id, exc_info=kill.exception()
            )

    async def aping(self) -> None:
        await self.raw.ping(reconnect=False)

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        cur = self.raw.cursor(import_driver("asyncmy", "mysql").cursors.SSCursor)
        try:
            asked = cancel_requests() if self.late_cancels else -1
            await cur.execute(sql, params or None)
            self._raise_late(asked)
        except asyncio.CancelledError:
            await self._abandon()
            raise

        exhausted = False

        async def fetch(n: int) -> Sequence[Any]:
            nonlocal exhausted
            try:
                asked = cancel_requests() if self.late_cancels else -1
                rows: Sequence[Any] = await cur.fetchmany(n)
                self._raise_late(asked)
            except asyncio.CancelledError:
                await self._abandon()
                raise
            exhausted = len(rows) < n
            return rows

        async def cleanup() -> None:
            if not self.usable():
                return
            if exhausted or not disposable or self.in_transaction():
                await cur.close()  # reads off what the server still sends
            else:
                # Left early on a connection of its own: reading off the rest
                # could take long (the result may be huge); stopping the
                # statement costs one reconnect.
                await self._abandon()

        return StreamCursor(fetch, cleanup, cur.description, batch_size)


class PyMySQLConnection(MySQLConnection):
    """A PyMySQL connection in autocommit mode (threads only)."""

    __slots__ = ()

    def usable(self) -> bool:
        raw = self.raw
        if not raw.open:
            return False
        # An idle connection has nothing to read, unless the server closed it
        # (killed, or timed out): one poll syscall, no round trip.
        if not raw.server_status & _IN_TRANS:
            sock = getattr(raw, "_sock", None)
            return sock is not None and not readable(sock.fileno())
        return True

    def close(self) -> None:
        if self.raw.open:
            try:
                self.raw.close()
            except Exception:  # the server went first: drop the socket
                self.raw._force_close()

    def execute(self, sql: str, params: Params) -> Cursor:
        cur = self.raw.cursor()
        try:
            cur.execute(sql, params or None)
            rows = cur.fetchall() if cur.description else ()
            return self._result(cur, rows)
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """``sql`` for every row as PyMySQL's executemany sends it; all or none, the
        cursor as :meth:`AsyncmyConnection.aexecutemany` gives it."""
        collector = self.raw.cursor(_collector(import_driver("pymysql", "mysql").cursors.Cursor))
        collector.chunks = []
        parts = _many_parts(sql)
        if parts is None:  # not one INSERT ... VALUES: one statement per row
            chunks = [collector.mogrify(sql, row) for row in rows]
        else:
            prefix, values, postfix = parts
            limit = MANY_STATEMENT_BYTES
            collector._do_execute_many(prefix, values, postfix, rows, limit, None)
            chunks = collector.chunks
        cur = self.raw.cursor()
        try:
            if len(chunks) == 1:
                cur.execute(chunks[0])
                self._rolled_back = False
                return Cursor((), cur.rowcount, cur.lastrowid, None)
            begin, end, undo = self._many_brackets()
            cur.execute(begin)
            count, first = 0, None
            try:
                for chunk in chunks:
                    cur.execute(chunk)
                    count += cur.rowcount
                    first = cur.lastrowid if first is None else first
            except Exception:
                if self.usable():
                    with contextlib.suppress(Exception):
                        cur.execute(undo)
                raise
            cur.execute(end)
            self._rolled_back = False
            return Cursor((), count, first, None)
        finally:
            cur.close()

    def ping(self, timeout: float) -> None:
        # PyMySQL waits read_timeout / write_timeout for the server, by default
        # for ever: bound both for the ping, then restore them.
        raw = self.raw
        saved = raw._read_timeout, raw._write_timeout
        raw._read_timeout = min(timeout, saved[0] or timeout)
        raw._write_timeout = min(timeout, saved[1] or timeout)
        try:
            raw.ping(reconnect=False)
        except Exception as exc:
            # PyMySQL reports its socket timeout as a lost connection (2013).
            if isinstance(exc.__context__, TimeoutError):
                raise TimeoutError(f"no answer to the ping within {timeout:.2f} s") from exc
            raise
        finally:
            raw._read_timeout, raw._write_timeout = saved


def connect_pymysql(params: dict[str, Any], timeout: float) -> PyMySQLConnection:
    """Open a PyMySQL connection whose handshake is bounded by ``timeout`` seconds.

    PyMySQL bounds only the TCP connect by ``connect_timeout``; the handshake
    reads wait ``read_timeout``, by default forever. They are bounded too,
    then the connection gets the timeouts the caller asked for.
    """
    pymysql = import_driver("pymysql", "mysql")
    params = dict(params)
    wanted = {key: params.get(key) for key in ("read_timeout", "write_timeout")}
    for key, value in wanted.items():
        params[key] = timeout if value is None else min(value, timeout)
    with translate_errors():
        raw = pymysql.connect(**params)
    raw._read_timeout = wanted["read_timeout"]
    raw._write_timeout = wanted["write_timeout"]
    return PyMySQLConnection(raw)


async def connect_asyncmy(
    params: dict[str, Any], timeout: float, kill: Callable[[int], Awaitable[None]]
) -> AsyncmyConnection:
    """Open an asyncmy connection within ``timeout`` seconds; ``kill`` stops its
    statements from a side connection when one is cancelled."""
    asyncmy = import_driver("asyncmy", "mysql")
    with translate_errors():
        async with asyncio.timeout(timeout):
            raw = await asyncmy.connect(**params)
    conn = AsyncmyConnection(raw, kill)
    conn.late_cancels = sys.version_info < (3, 12) and bool(params.get("read_timeout"))
    return conn


async def kill_thread(params: dict[str, Any], timeout: float, thread_id: int) -> None:
    """Kill server thread ``thread_id`` (statement and connection) from a side link."""
    asyncmy = import_driver("asyncmy", "mysql")
    async with asyncio.timeout(timeout):
        side = await asyncmy.connect(**params)
        try:
            cur = side.cursor()
            try:
                await cur.execute(f"KILL {int(thread_id)}")
            except Exception as exc:
                if error_code(exc) != 1094:  # ER_NO_SUCH_THREAD: it ended already
                    raise
            finally:
                await cur.close()
        finally:
            await side.ensure_closed()
