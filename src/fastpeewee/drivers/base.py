"""The driver contract: the connection wrapper every adapter implements, and socket helpers."""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import peewee

from ..cursor import Cursor, StreamCursor
from .session import changes_session

__all__ = [
    "Bulk",
    "Connection",
    "CopyRequest",
    "Params",
    "TransportWatch",
    "close_in_loop",
    "import_driver",
    "readable",
    "writable",
]

Params = Sequence[Any]


def import_driver(name: str, extra: str) -> Any:
    """Import driver module ``name``, or say which extra of fastpeewee installs it."""
    try:
        return __import__(name)
    except ImportError:
        raise peewee.ImproperlyConfigured(
            f"{name} is not installed: pip install 'fastpeewee[{extra}]'"
        ) from None


class CopyRequest:
    """A ``COPY table (columns) FROM STDIN`` on its way to :meth:`Connection.acopy`."""

    __slots__ = ("columns", "records", "schema", "table")

    def __init__(
        self, table: str, schema: str | None, columns: list[str], records: Iterable[Params]
    ) -> None:
        self.table = table
        self.schema = schema
        self.columns = columns
        self.records = records  # iterable more than once


# What a statement may carry besides its SQL: the rows of an executemany, or a
# COPY to run instead (see Connection.executemany and Connection.acopy).
Bulk: TypeAlias = "Sequence[Params] | CopyRequest"


class Connection:
    """One driver connection with the bookkeeping the pool and the connection states need.

    Its operations: ``execute(sql, params)``, ``executemany(sql, rows)`` and
    their async twins ``aexecute`` and ``aexecutemany``, and ``acopy(table,
    columns, records)``, besides ``ping``, ``rollback`` and their twins. Sync
    methods serve threads, async ones tasks; a backend implements the side(s)
    and operations its driver supports (the SQLite backend: both sides, no
    COPY; PostgreSQL's asyncpg: COPY, no executemany).
    """

    __slots__ = ("broken", "created_at", "dirty", "pool", "raw", "released_at", "unsettled")

    # True when a statement that succeeds may end the open transaction
    # (MySQL commits implicitly before DDL); False when only COMMIT/ROLLBACK do.
    implicit_commits = False

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.pool: Any = None  # set by the pool that opened it; releases go there
        self.created_at = 0.0
        self.released_at = 0.0
        self.broken = False
        self.dirty = False  # ran a statement that changes the session: close, never reuse
        # A statement was interrupted (cancelled) mid-flight: what the server did
        # with it is unknown until asettle() ran. Never handed on before that.
        self.unsettled = False

    def note(self, sql: str) -> None:
        """Mark the connection dirty when ``sql`` may change its session."""
        if not self.dirty and changes_session(sql):
            self.dirty = True

    # -- both sides ---------------------------------------------------------

    def usable(self) -> bool:
        """Cheap check, no I/O: False once the driver knows the link is gone."""
        raise NotImplementedError

    def usable_idle(self) -> bool:
        """:meth:`usable`, for an idle connection about to be handed out.

        Still no round trip, but a backend may look further: at most a poll
        of the socket for what the server sent unasked (a FATAL, a close).
        """
        return self.usable()

    def in_transaction(self) -> bool:
        """True while the server holds an open (or failed) transaction for us."""
        raise NotImplementedError

    def close(self) -> None:
        """Close at once, without waiting for the server."""
        raise NotImplementedError

    def after_error(self, exc: BaseException) -> None:
        """Mark the connection broken when ``exc`` left it unusable or in doubt.

        A driver timeout (``command_timeout``) leaves the statement's fate
        unknown and the driver busy cancelling it: never hand that on. A
        cancellation (or any other interruption that is not an error reported
        by the server) leaves the connection *unsettled*.
        """
        if isinstance(exc, TimeoutError) or not self.usable():
            self.broken = True
        elif not isinstance(exc, Exception):
            self.unsettled = True
        elif getattr(exc, "sqlstate", None) == "25006" and not self.in_transaction():
            # A write refused outside any transaction: the server turned read-only
            # (a standby after a failover). Never reuse the connection: the next
            # one goes where target_session_attrs=read-write finds the primary.
            self.broken = True

    # -- sync side ----------------------------------------------------------

    def execute(self, sql: str, params: Params) -> Cursor:
        """Run ``sql`` with ``params``; return its whole result."""
        raise TypeError(f"{type(self).__name__} cannot be used from a thread")

    def executemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """Run ``sql`` once per row of ``rows``, all or none; the cursor carries the
        row count and the last row id."""
        raise TypeError(f"{type(self).__name__} has no executemany")

    def ping(self, timeout: float) -> None:
        """Round trip to the server, raising if no answer came within ``timeout`` s.

        The default suits a local database (SQLite): no network to wait on.
        """
        self.execute("SELECT 1", ())

    def rollback(self) -> None:
        self.execute("ROLLBACK", ())

    # -- async side ---------------------------------------------------------

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        """Run ``sql`` with ``params``; return its whole result."""
        raise TypeError(f"{type(self).__name__} cannot be used from asyncio")

    async def aexecutemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """:meth:`executemany` from a task."""
        raise TypeError(f"{type(self).__name__} has no executemany")

    async def acopy(
        self, table: str, columns: list[str], records: Iterable[Params], schema: str | None
    ) -> Cursor:
        """``COPY table (columns) FROM STDIN`` of ``records``; the cursor carries the
        row count."""
        raise TypeError(f"{type(self).__name__} has no COPY")

    async def aping(self) -> None:
        await self.aexecute("SELECT 1", ())

    async def arollback(self) -> None:
        await self.aexecute("ROLLBACK", ())

    async def asettle(self) -> None:
        """After an interrupted statement: wait until the connection is idle, with
        no transaction open. The caller bounds it in time and closes the
        connection if it fails.

        The default suits drivers that finish (or close) an interrupted
        statement before they return: roll back what may have begun.
        """
        if self.in_transaction():
            await self.arollback()

    async def astream(
        self, sql: str, params: Params, batch_size: int, disposable: bool = False
    ) -> StreamCursor:
        """Run ``sql`` and return a cursor that fetches ``batch_size`` rows at a time.

        ``disposable``: the connection serves only this stream, so a stream
        left early may drop the connection rather than read off the rest.
        """
        raise NotImplementedError


def readable(fd: int, timeout: float = 0.0) -> bool:
    """True when ``fd`` has bytes to read, or its peer closed, within ``timeout`` s.

    ``poll``, not ``select``: ``select`` refuses descriptors past 1023, which a
    busy process reaches. A descriptor that is no longer valid counts as readable
    (the link is gone).
    """
    return _poll(fd, select.POLLIN, timeout)


def writable(fd: int, timeout: float = 0.0) -> bool:
    """True when ``fd`` can take more bytes (or failed) within ``timeout`` s."""
    return _poll(fd, select.POLLOUT, timeout)


def _poll(fd: int, events: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    try:
        return bool(poller.poll(max(0, round(timeout * 1000))))
    except OSError:
        return True


class TransportWatch:
    """Tells whether bytes (or the close) from the server wait unread on the socket
    under an asyncio transport (an asyncpg or asyncmy connection's).

    The event loop reads such a socket as soon as it is readable; an idle
    connection whose socket is readable at hand-out got something unasked
    since the loop last ran: in practice the server's last words
    (PostgreSQL's FATAL "terminating connection") and its close. The poll
    object is made once per connection (one per check cost ten Python calls
    on every statement). Without a socket the link is gone.
    """

    __slots__ = ("_poller",)

    def __init__(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket") if transport is not None else None
        self._poller: Any = None
        if sock is not None:
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)

    def readable(self) -> bool:
        """True when something waits unread, or the socket is gone."""
        poller = self._poller
        if poller is None:
            return True
        try:
            return bool(poller.poll(0))
        except OSError:
            return True


def close_in_loop(close: Callable[[], object], transport: Any) -> None:
    """Close an asyncio driver connection with ``close``; if its event loop is
    gone, close the socket under ``transport`` by hand.

    asyncio transports close through their loop; with the loop closed, only
    the socket itself is left to close (else it leaks and warns at exit).
    """
    try:
        close()
    except RuntimeError:  # its event loop is closed
        sock = getattr(transport, "_sock", None)  # asyncio's selector transports
        if sock is not None:
            sock.close()
            transport._sock = None


def cancel_requests() -> int:
    """Cancellations asked of the running task and not yet delivered or withdrawn.

    Python 3.11's ``asyncio.wait_for``, which asyncmy uses in ``connect()`` and
    (with ``read_timeout=``) for every read, returns the result instead of
    raising when the task is cancelled just as the awaited call finishes
    (fixed in 3.12): the count then stays up. Compare it before and after such
    a call and raise the cancellation the driver swallowed.
    """
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()
