"""Connection state per owner: a thread, an asyncio task, or a ``db.scope()`` block.

A :class:`ConnectionState` is what peewee keeps in ``Database._state``: the
connection, the transaction stack, the ``connection_context`` stack and the
after-commit callbacks. :class:`ThreadState` serves a thread with no event
loop; :class:`TaskState` an asyncio task; :class:`SharedState` a
``db.scope()`` block (a request), with a :class:`PrivateState` for a thread
of it while somebody else's transaction holds the shared connection. The
rules, the same for every kind of state:

- A statement run outside an open connection borrows one from the pool and
  returns it straight after, unless the statement left a transaction open
  (``BEGIN``, a savepoint): then the state keeps the connection until that
  transaction ends.
- ``connect()`` / ``aconnect()`` (and ``with db``, ``async with db``,
  ``connection_context()``) hold a connection until ``close()``.
- A task's held connection goes back when the task ends; an open transaction
  is rolled back first.
- When the connection under an open transaction breaks, or a statement of it
  is interrupted (cancelled, timed out), the transaction is *lost*: every
  statement but a rollback raises :class:`TransactionLost` until the
  transaction block ends. There is never a silent reconnect inside it.
- A connection whose statement was interrupted is *unsettled*: its fate on the
  server is unknown (a ``BEGIN`` may still land), so it is never handed on
  before :meth:`Connection.asettle` brought it back to a known idle state, or
  it is closed.
- In a shared state (a request) a transaction belongs to whoever began it (a
  task, with the threads it runs): the others never run inside it, and use a
  state of their own while it is open.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from .bridge import await_, in_bridge
from .cursor import Cursor, StreamCursor
from .drivers.base import CopyRequest
from .drivers.retry import may_retry
from .errors import (
    BRIDGE_HINT,
    MissingGreenletBridge,
    TransactionLost,
    peewee_error_for,
    translate_errors,
    wrap_driver_error,
)

if TYPE_CHECKING:
    from .database import AsyncDatabase
    from .drivers.base import Bulk, Connection, Params

__all__ = [
    "AsyncState",
    "ConnectionState",
    "PrivateState",
    "Reroute",
    "SharedState",
    "TaskState",
    "ThreadState",
]

logger = logging.getLogger("fastpeewee.state")
T = TypeVar("T")

# Bound on the rollback run when a connection goes back with a transaction open.
RELEASE_TIMEOUT = 5.0


class ConnectionState:
    """The connection and transaction state of one owner (peewee's ``_state``)."""

    __slots__ = ("commit_callbacks", "conn", "ctx", "db", "held", "lost", "transactions")

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.conn: Connection | None = None
        self.held = False  # connect() was called: keep a connection until close()
        self.lost = False  # the connection under an open transaction broke
        self.transactions: list[Any] = []
        self.ctx: list[Any] = []
        self.commit_callbacks: list[Any] = []

    @property
    def closed(self) -> bool:
        """True when this state holds no connection (peewee's ``_state.closed``)."""
        return self.conn is None and not self.held

    @property
    def busy(self) -> bool:
        """True while anything is open here: a connection, a transaction, a lost one."""
        return (
            self.conn is not None
            or self.held
            or self.lost
            or bool(self.transactions)
            or bool(self.ctx)
        )

    def set_connection(self, conn: Any) -> None:
        raise peewee.InterfaceError("fastpeewee databases manage their own connections")

    def connect(self, reuse_if_open: bool) -> bool:
        """Hold a connection until :meth:`close` (peewee's ``connect``); False when
        one is held already and ``reuse_if_open``."""
        if not self.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        self._hold()
        return True

    def _hold(self) -> None:
        """Take a connection and keep it until :meth:`close`."""
        raise NotImplementedError

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """Run one statement on this state's connection, or on a borrowed one.

        ``ending``: the statement ends the transaction (COMMIT, ROLLBACK).
        ``bulk``: rows to run ``sql`` for (executemany), or a COPY to run
        instead (see :func:`_run_sync` and :func:`_run_async`).
        """
        raise NotImplementedError

    def close(self) -> bool:
        """Give the held connection back; return whether one was open."""
        raise NotImplementedError

    # -- decisions shared by the sync and async states --------------------------

    def _lost_guard(self, sql: str, ending: bool) -> Cursor | None:
        """In a lost transaction, turn rollbacks into no-ops and refuse the rest."""
        if not self.lost:
            return None
        if sql.startswith("ROLLBACK"):
            if ending and not self.transactions:
                self.lost = False  # the transaction block is over
            return Cursor()
        if sql.startswith("BEGIN") and not self.transactions:
            self.lost = False  # a fresh transaction after the lost one
            return None
        raise TransactionLost(
            "the connection under this transaction broke (cancelled, timed out or "
            "killed by the server); the server rolled the transaction back, so nothing "
            "of it was committed. Leave the transaction block and retry it."
        )

    def _keep_after_borrow(self, conn: Connection) -> bool:
        """A borrowed connection stays with the state while it is in a transaction."""
        return not conn.broken and not conn.unsettled and conn.in_transaction()

    def _must_release(self, conn: Connection, ending: bool, failed: bool = False) -> bool:
        """After a statement on the state's connection, return True to let it go.

        Marks the transaction lost when the connection broke or its transaction
        vanished without a COMMIT/ROLLBACK of ours. On MySQL a statement that
        succeeds may commit implicitly (DDL): the connection then stays, as in
        peewee; one that fails and ends the transaction (a deadlock) loses it.
        """
        if conn.broken or conn.unsettled:
            self.lost = self.lost or bool(self.transactions)
            return True
        in_txn = conn.in_transaction()
        vanished = self.transactions and not in_txn and not ending
        if vanished and (failed or not conn.implicit_commits):
            self.lost = True
            return True
        return not in_txn and not self.held and not self.transactions

    def _forget(self) -> Connection | None:
        conn, self.conn = self.conn, None
        self.held = False
        self.lost = False
        self.ctx = []
        self.transactions = []
        self.commit_callbacks = []
        return conn

    def _check_close(self) -> None:
        if self.transactions:
            raise peewee.OperationalError(
                "Attempting to close database while transaction is open."
            )


class ThreadState(ConnectionState):
    """State of a thread with no event loop: real blocking I/O on the sync pool."""

    __slots__ = ()

    def __del__(self) -> None:
        # Freed with its thread's thread-local state: a thread that ended
        # holding a connection (a close hook skipped by an exception, or never
        # written) gives the slot back, as a task does when it ends. No lock or
        # I/O here: the pool closes it on its next use.
        conn = self.conn
        if conn is not None and conn.pool is not None:
            self.conn = None
            conn.pool.orphan(conn)

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """Run one statement from a thread (see :meth:`ConnectionState.execute`)."""
        skipped = self._lost_guard(sql, ending)
        if skipped is not None:
            return skipped
        conn = self.conn
        if conn is None and self.held:
            conn = self.conn = self.db._sync_pool_get().acquire()
        if conn is not None:
            return self._on_pinned(conn, sql, params, ending, bulk)
        pool = self.db._sync_pool_get()
        conn = pool.acquire()
        try:
            try:
                cursor = _run_sync(conn, sql, params, bulk)
            except Exception as exc:
                if not may_retry(conn, exc):
                    raise
                conn = pool.replace(conn)  # dead before it was sent: once more, on a new one
                cursor = _run_sync(conn, sql, params, bulk)
        except BaseException:
            self._return(conn)
            raise
        if self._keep_after_borrow(conn):
            self.conn = conn
        else:
            conn.pool.release(conn)
        return cursor

    def _on_pinned(
        self, conn: Connection, sql: str, params: Params, ending: bool, bulk: Bulk | None
    ) -> Cursor:
        try:
            cursor = _run_sync(conn, sql, params, bulk)
        except BaseException:
            if self._must_release(conn, ending, failed=True):
                self._return(self._detach())
            raise
        if self._must_release(conn, ending):
            self._return(self._detach())
        return cursor

    def _detach(self) -> Connection:
        conn = self.conn
        assert conn is not None
        self.conn = None
        return conn

    def _hold(self) -> None:
        if self.conn is None:
            self.conn = self.db._sync_pool_get().acquire()
        self.held = True

    def close(self) -> bool:
        """Give the held connection back; return whether one was open."""
        self._check_close()
        was_open = not self.closed
        conn = self._forget()
        if conn is not None:
            self._return(conn)
        return was_open

    def _return(self, conn: Connection) -> None:
        """Release ``conn`` to its pool, rolling back a transaction left open."""
        if not conn.broken and conn.usable() and conn.in_transaction():
            try:
                conn.rollback()
            except Exception:
                logger.warning("rollback before release failed; closing", exc_info=True)
                conn.broken = True
        conn.pool.release(conn)


def _run_sync(conn: Connection, sql: str, params: Params, bulk: Bulk | None) -> Cursor:
    """The driver operation for a statement from a thread: ``execute``, or with
    ``bulk`` rows ``executemany`` (a COPY has no sync driver)."""
    conn.note(sql)
    try:
        with translate_errors():
            if bulk is None:
                return conn.execute(sql, params)
            if isinstance(bulk, CopyRequest):
                raise TypeError(f"{type(conn).__name__} cannot COPY from a thread")
            return conn.executemany(sql, bulk)
    except BaseException as exc:
        conn.after_error(exc)
        raise


async def _open_stream(
    conn: Connection, sql: str, params: Params, batch_size: int, disposable: bool = False
) -> StreamCursor:
    """``conn.astream``; whatever interrupts the open, a fetch or the close is
    recorded on ``conn`` (``after_error``), as for any statement."""
    conn.note(sql)
    try:
        with translate_errors():
            cursor = await conn.astream(sql, params, batch_size, disposable=disposable)
    except BaseException as exc:
        conn.after_error(exc)
        raise
    cursor.watch(conn.after_error)
    return cursor


async def _run_async(conn: Connection, sql: str, params: Params, bulk: Bulk | None) -> Cursor:
    """The driver operation for a statement from a task: ``aexecute``, or with
    ``bulk`` ``aexecutemany`` (rows) or ``acopy`` (a :class:`CopyRequest`)."""
    # translate_errors() spelled out: this is every async statement's path.
    conn.note(sql)
    try:
        if bulk is None:
            return await conn.aexecute(sql, params)
        if isinstance(bulk, CopyRequest):
            return await conn.acopy(bulk.table, bulk.columns, bulk.records, bulk.schema)
        return await conn.aexecutemany(sql, bulk)
    except BaseException as exc:
        conn.after_error(exc)
        target = peewee_error_for(exc) if isinstance(exc, Exception) else None
        if target is None:
            raise
        raise wrap_driver_error(target, exc) from exc


class AsyncState(ConnectionState):
    """State served by an event loop; sync callers reach it through the bridge."""

    __slots__ = ("_lock", "loop", "streaming")

    def __init__(self, db: AsyncDatabase, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(db)
        self.loop = loop
        self._lock: asyncio.Lock | None = None
        self.streaming = False

    def serves(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        """True when the task ``task`` of ``loop`` should use this state."""
        raise NotImplementedError

    def serves_thread(self) -> bool:
        """True when a thread without a loop should send its queries here."""
        return False

    # -- sync callers -------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of this state's coroutines from sync code and return its result."""
        running = asyncio._get_running_loop()
        if running is None:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        if in_bridge():
            return await_(coro)
        coro.close()
        raise MissingGreenletBridge("blocking call on the event-loop thread. " + BRIDGE_HINT)

    # -- statements ---------------------------------------------------------

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """:meth:`aexecute` from sync code, through the bridge or the loop's thread."""
        return self.call(self.aexecute(sql, params, ending, bulk))

    async def aexecute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        """Run one statement on this state's connection, or on a borrowed one.

        ``ending`` and ``bulk`` as for :meth:`ConnectionState.execute`.
        """
        skipped = self._lost_guard(sql, ending)
        if skipped is not None:
            return skipped
        if self.conn is not None or self.held:
            lock = self._locked()
            await self._acquire_busy(lock)
            try:
                fresh = self.conn is None
                conn = self.conn or await self._acquire()
                return await self._on_pinned(conn, sql, params, ending, bulk, fresh)
            finally:
                lock.release()
        pool = self.db._async_pool_get()
        conn = await pool.aacquire()
        try:
            try:
                cursor = await _run_async(conn, sql, params, bulk)
            except Exception as exc:
                if not may_retry(conn, exc):
                    raise
                # Dead before the statement was sent: once more, on a new connection.
                conn = await pool.areplace(conn)
                cursor = await _run_async(conn, sql, params, bulk)
        except BaseException:
            await self._return(conn)
            raise
        if self._keep_after_borrow(conn):
            self._pin(conn)
        else:
            conn.pool.release(conn)
        return cursor

    async def _on_pinned(
        self,
        conn: Connection,
        sql: str,
        params: Params,
        ending: bool,
        bulk: Bulk | None,
        fresh: bool = False,
    ) -> Cursor:
        """Run on the state's connection; ``fresh``: taken from the pool for this statement."""
        try:
            cursor = await _run_async(conn, sql, params, bulk)
        except BaseException as exc:
            if fresh and not self.transactions and self.conn is conn and may_retry(conn, exc):
                # Dead before the statement was sent: once more, on a new connection.
                self.conn = None
                conn = await conn.pool.areplace(conn)
                self._pin(conn)
                return await self._on_pinned(conn, sql, params, ending, bulk)
            if self._must_release(conn, ending, failed=True) and self.conn is conn:
                self.conn = None
                await self._return(conn)
            raise
        if self._must_release(conn, ending) and self.conn is conn:
            self.conn = None
            conn.pool.release(conn)  # not in a transaction: no I/O
        return cursor

    def _pin(self, conn: Connection) -> None:
        self.conn = conn

    async def _acquire(self) -> Connection:
        conn: Connection = await self.db._async_pool_get().aacquire()
        self._pin(conn)
        return conn

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def astream(
        self, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]]:
        """Open a server-side cursor; the returned coroutine closes it and frees the link."""
        self._lost_guard(sql, False)
        if self.conn is None and not self.held:
            conn = await self.db._async_pool_get().aacquire()
            try:
                cursor = await _open_stream(conn, sql, params, batch_size, disposable=True)
            except BaseException:
                await self._return(conn)
                raise
            return cursor, self._end_stream(cursor, conn, None)
        lock = self._locked()
        await self._acquire_busy(lock)
        try:
            conn = self.conn or await self._acquire()
            cursor = await _open_stream(conn, sql, params, batch_size)
        except BaseException:
            try:
                await self._let_go_if_unfit()
            finally:
                lock.release()
            raise
        self.streaming = True
        return cursor, self._end_stream(cursor, None, lock)

    async def _acquire_busy(self, lock: asyncio.Lock) -> None:
        if not self.streaming:
            await lock.acquire()
            return
        try:
            async with asyncio.timeout(self.db.streaming_timeout):
                await lock.acquire()
        except TimeoutError:
            raise peewee.InterfaceError(
                "this task's connection is busy streaming rows from iterate(); "
                "exhaust or close that iterator first, or run the query in another task"
            ) from None

    async def _end_stream(
        self, cursor: StreamCursor, borrowed: Connection | None, lock: asyncio.Lock | None
    ) -> None:
        try:
            await asyncio.shield(cursor.aclose())
        except BaseException:
            # Interrupted while the close still runs on the connection: it
            # cannot be settled now, so it is closed rather than handed on.
            conn = borrowed or self.conn
            if conn is not None:
                conn.broken = True
            raise
        finally:
            if borrowed is not None:
                await self._return(borrowed)
            if lock is not None:
                try:
                    await self._let_go_if_unfit()
                finally:
                    self.streaming = False
                    lock.release()

    async def _let_go_if_unfit(self) -> None:
        """Let go of a held connection a stream left unfit: broken, or unsettled
        (a statement of it interrupted). It is settled or closed on its way back.

        Outside a transaction the next statement takes a fresh connection;
        inside one, the transaction is lost.
        """
        conn = self.conn
        if conn is None or not (conn.broken or conn.unsettled or not conn.usable()):
            return
        self.lost = self.lost or bool(self.transactions)
        self.conn = None
        if not conn.usable():
            conn.broken = True
        await self._return(conn)

    # -- connect / close ----------------------------------------------------

    async def aconnect(self) -> Connection:
        """Hold a connection until :meth:`aclose`; return it."""
        async with self._locked():
            if self.conn is None:
                await self._acquire()
        self.held = True
        conn: Connection | None = self.conn
        assert conn is not None
        return conn

    def _hold(self) -> None:
        self.call(self.aconnect())  # through the bridge

    async def aclose(self) -> bool:
        """Give the held connection back; return whether one was open."""
        self._check_close()
        was_open = not self.closed
        conn = self._forget()
        if conn is not None:
            await self._return(conn)
        return was_open

    def close(self) -> bool:
        """peewee's ``close()`` through the bridge."""
        return self.call(self.aclose())

    async def _retire(self) -> None:
        """Once no statement runs here, give the connection back (rolled back).

        A transaction still open here is lost for whoever owns it.
        """
        async with self._locked():
            self.lost = self.lost or bool(self.transactions)
            conn, self.conn = self.conn, None
            self.held = False
        if conn is not None:
            await self._return(conn)

    async def _return(self, conn: Connection) -> None:
        """Release ``conn``; the rollback or settling it needs finishes even if we
        are cancelled (it runs in a task of its own, which ``close_pool`` waits for).
        """
        if conn.broken or not conn.usable():
            conn.pool.release(conn)  # closed by the pool
            return
        if not conn.unsettled and not conn.in_transaction():
            conn.pool.release(conn)
            return
        await asyncio.shield(self.db._spawn_release(_settle_and_release(conn)))


async def _settle_and_release(conn: Connection) -> None:
    """Bring ``conn`` back to idle (rolling back whatever is open), then release it."""
    try:
        async with asyncio.timeout(RELEASE_TIMEOUT):
            await conn.asettle()
        conn.unsettled = False
    except BaseException:
        logger.warning("settling a connection before release failed; closing it", exc_info=True)
        conn.broken = True
    conn.pool.release(conn)


class TaskState(AsyncState):
    """The implicit state of one asyncio task; its held connection goes back at task end."""

    __slots__ = ("owner", "watching")

    def __init__(
        self, db: AsyncDatabase, loop: asyncio.AbstractEventLoop, owner: asyncio.Task[Any]
    ) -> None:
        super().__init__(db, loop)
        self.owner = owner
        self.watching = False

    def serves(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        return task is self.owner

    def _pin(self, conn: Connection) -> None:
        self.conn = conn
        if not self.watching:
            self.watching = True
            self.owner.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        self.watching = False
        conn = self._forget()
        if conn is None:
            return
        logger.debug("task %r ended holding a connection; releasing it", task.get_name())
        self.db._release_later(self, conn)


class Reroute(Exception):
    """Internal: the shared connection is in another caller's transaction.

    Raised by :class:`SharedState` before anything was sent; the choke points
    resolve the caller's state again (now its own) and run the statement there.
    """


class PrivateState(AsyncState):
    """The own state of a thread's caller inside a shared state, used while the
    shared connection is in somebody else's transaction: it borrows a
    connection per statement and keeps one only for its own transaction.
    """

    __slots__ = ()


class SharedState(AsyncState):
    """The state of a ``db.scope()`` block, shared by every task and thread started
    inside it (a request).

    One connection serves them all, taken on the first statement. Its
    transaction belongs to the caller that began it, ``owner``: a task (with
    the worker threads it runs), or the caller token of a thread. Everybody
    else runs in a state of their own (``others``) meanwhile, so siblings
    never share a transaction stack, and an autocommit statement of one never
    lands in another's transaction.
    """

    __slots__ = ("closing", "finished", "others", "owner")

    def __init__(
        self, db: AsyncDatabase, loop: asyncio.AbstractEventLoop, hold: bool = True
    ) -> None:
        super().__init__(db, loop)
        self.finished = False  # no new statement runs here
        self.closing = False  # finished, but a statement still runs: wait for it
        # hold: keep the connection between statements (a request); False
        # gives it back after each statement outside a transaction (a
        # WebSocket, which may idle for hours).
        self.held = hold
        self.owner: object | None = None
        self.others: dict[object, AsyncState] = {}

    def serves(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        return loop is self.loop and not self.finished

    def serves_thread(self) -> bool:
        return self.loop.is_running() and (
            not self.finished or self.closing or bool(self.others)
        )

    def resolve(self, who: object) -> AsyncState | None:
        """The state the caller ``who`` uses, or None once this state is over for it."""
        others = self.others
        if others:
            other = others.get(who)
            if other is not None:
                if other.busy:
                    return other
                del others[who]
        if self.finished and not self.closing:
            return None
        owner = self.owner
        if owner is None or owner is who:
            return self
        if isinstance(who, asyncio.Task):
            other = TaskState(self.db, self.loop, who)
        else:
            other = PrivateState(self.db, self.loop)
        others[who] = other
        return other

    def _claim(self, who: object) -> None:
        """After a statement: the transaction open on the connection is ``who``'s."""
        conn = self.conn
        if self.transactions or self.lost or (conn is not None and conn.in_transaction()):
            if self.owner is None:
                self.owner = who
        else:
            self.owner = None

    async def aexecute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        who = self.db._who.get(None)
        owner = self.owner
        if owner is not None and owner is not who:
            raise Reroute
        lock = self._locked()
        await self._acquire_busy(lock)
        try:
            owner = self.owner
            if self.finished or (owner is not None and owner is not who):
                raise Reroute
            try:
                skipped = self._lost_guard(sql, ending)
                if skipped is not None:
                    return skipped
                fresh = self.conn is None
                conn = self.conn or await self._acquire()
                return await self._on_pinned(conn, sql, params, ending, bulk, fresh)
            finally:
                self._claim(who)
        finally:
            lock.release()

    async def astream(
        self, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]]:
        who = self.db._who.get(None)
        owner = self.owner
        if self.finished or (owner is not None and owner is not who):
            raise Reroute
        if self.conn is None and not self.held:
            return await super().astream(sql, params, batch_size)  # a connection of its own
        cursor, finish = await super().astream(sql, params, batch_size)
        if self.owner is None:
            self.owner = who  # the stream's transaction: siblings go elsewhere meanwhile
        return cursor, self._end_owned_stream(finish)

    async def _end_owned_stream(self, finish: Coroutine[Any, Any, None]) -> None:
        try:
            await finish
        finally:
            self._claim(None)

    async def finish(self) -> None:
        """End the block: give its connections back, rolling back what is open.

        A transaction still open for a live task other than the caller goes on
        with that task (on the same connection, given back when it ends);
        any other one is lost for its owner (a worker thread still inside its
        block: its next statement raises :class:`TransactionLost`). While a
        statement still runs on the connection, all this waits for it, in the
        background: the connection is never handed on mid-statement.
        """
        self.finished = self.closing = True
        current = asyncio.current_task()
        lock = self._lock
        if lock is not None and lock.locked():
            self.db._spawn_release(self._close_when_idle(current))
            return
        conn = self._close(current)
        if conn is not None:
            await self._return(conn)

    async def _close_when_idle(self, current: asyncio.Task[Any] | None) -> None:
        async with self._locked():
            conn = self._close(current)
        if conn is not None:
            await self._return(conn)

    def _close(self, current: asyncio.Task[Any] | None) -> Connection | None:
        """Decide what becomes of what is open (no statement runs); return the
        connection to give back, if any."""
        owner = self.owner  # set only while a transaction is open (or lost) here
        if owner is not None:
            if isinstance(owner, asyncio.Task) and owner is not current and not owner.done():
                self._hand_over(owner)
            else:
                gone = PrivateState(self.db, self.loop)
                gone.lost = True
                gone.transactions = list(self.transactions)
                self.others[owner] = gone
        self.owner = None
        self.closing = False
        for other in list(self.others.values()):
            if isinstance(other, TaskState) and not other.owner.done():
                continue  # it gives its connection back when its task ends
            if other.conn is not None:
                self.db._spawn_release(other._retire())
        return self._forget()

    def _hand_over(self, owner: asyncio.Task[Any]) -> None:
        """Move the open transaction, connection and all, to ``owner``'s own state."""
        state = TaskState(self.db, self.loop, owner)
        state.transactions, self.transactions = self.transactions, []
        state.commit_callbacks, self.commit_callbacks = self.commit_callbacks, []
        state.ctx, self.ctx = self.ctx, []
        state.lost, self.lost = self.lost, False
        state._lock, state.streaming = self._lock, self.streaming
        conn, self.conn = self.conn, None
        self.held = False
        if conn is not None:
            state._pin(conn)
        self.others[owner] = state


class ThreadStates(threading.local):
    """One :class:`ThreadState` per thread and database."""

    state: ThreadState | None = None
