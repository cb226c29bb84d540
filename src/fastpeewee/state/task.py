"""The state of an asyncio task (and the private state of a thread inside a shared block)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import peewee

from ..bridge import await_, in_bridge
from ..cursor import Cursor, StreamCursor
from ..drivers.base import CopyRequest
from ..drivers.retry import may_retry
from ..errors import (
    BRIDGE_HINT,
    MissingGreenletBridge,
    peewee_error_for,
    translate_errors,
    wrap_driver_error,
)
from .base import RELEASE_TIMEOUT, ConnectionState, logger

T = TypeVar("T")

if TYPE_CHECKING:
    from ..database import AsyncDatabase
    from ..drivers.base import Bulk, Connection, Params
    from ..pool import Pool


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
    ``bulk`` ``aexecutemany`` (rows) or ``acopy`` (a :class:`CopyRequest`).

    The statement paths of :class:`AsyncState` spell out its first case
    (``note``, ``aexecute``, :func:`_raise_failure`): one frame less on every
    statement's way to the driver and back.
    """
    conn.note(sql)
    try:
        if bulk is None:
            return await conn.aexecute(sql, params)
        if isinstance(bulk, CopyRequest):
            return await conn.acopy(bulk.table, bulk.columns, bulk.records, bulk.schema)
        return await conn.aexecutemany(sql, bulk)
    except BaseException as exc:
        _raise_failure(conn, exc)


def _raise_failure(conn: Connection, exc: BaseException) -> NoReturn:
    """Record on ``conn`` what interrupted its statement, and raise it as peewee's
    error (``translate_errors()`` spelled out: this is every async statement's path)."""
    conn.after_error(exc)
    target = peewee_error_for(exc) if isinstance(exc, Exception) else None
    if target is None:
        raise exc
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
        if self.lost:
            skipped = self._lost_guard(sql, ending)
            if skipped is not None:
                return skipped
        if self.conn is not None or self.held:
            lock = self._lock or self._locked()
            if self.streaming:
                await self._acquire_busy(lock)
            else:
                await lock.acquire()
            try:
                mine = self.conn
                if mine is None:
                    mine = await self._acquire()
                    return await self._on_pinned(mine, sql, params, ending, bulk, True)
                return await self._on_pinned(mine, sql, params, ending, bulk)
            finally:
                lock.release()
        pool = self.db._async_pool_get(self.loop)
        conn: Connection | None = pool.take_idle()
        if conn is None:
            conn = await pool.aacquire()
        try:
            if bulk is None:  # _run_async spelled out
                conn.note(sql)
                try:
                    cursor = await conn.aexecute(sql, params)
                except BaseException as exc:
                    _raise_failure(conn, exc)
            else:
                cursor = await _run_async(conn, sql, params, bulk)
        except BaseException as exc:
            cursor, conn = await self._borrowed_failed(pool, conn, exc, sql, params, bulk)
        if self._keep_after_borrow(conn):
            self._pin(conn)
        else:
            conn.pool.release(conn)
        return cursor

    async def _borrowed_failed(
        self,
        pool: Pool[Any],
        conn: Connection,
        exc: BaseException,
        sql: str,
        params: Params,
        bulk: Bulk | None,
    ) -> tuple[Cursor, Connection]:
        """The statement on ``conn``, borrowed for it alone, raised ``exc``: when it
        never reached the server, run it once more on a new connection (return
        the cursor and that connection); else give ``conn`` back and raise."""
        try:
            if not may_retry(conn, exc):
                raise exc
            # Dead before the statement was sent: once more, on a new connection.
            conn = await pool.areplace(conn)
            return await _run_async(conn, sql, params, bulk), conn
        except BaseException:
            await self._return(conn)
            raise

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
            if bulk is None:  # _run_async spelled out
                conn.note(sql)
                try:
                    cursor = await conn.aexecute(sql, params)
                except BaseException as exc:
                    _raise_failure(conn, exc)
            else:
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
        conn: Connection = await self.db._async_pool_get(self.loop).aacquire()
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
            conn = await self.db._async_pool_get(self.loop).aacquire()
            try:
                cursor = await _open_stream(conn, sql, params, batch_size, disposable=True)
            except BaseException:
                await self._return(conn)
                raise
            return cursor, self._end_stream(cursor, conn, None)
        lock = self._locked()
        await self._acquire_busy(lock)
        return await self._astream_locked(lock, sql, params, batch_size)

    async def _astream_locked(
        self, lock: asyncio.Lock, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]]:
        """:meth:`astream` on this state's connection, ``lock`` held (released
        here when opening fails, else when the stream ends)."""
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
        closing = asyncio.ensure_future(cursor.aclose())
        try:
            await asyncio.shield(closing)
        except BaseException:
            # Interrupted while the close still runs on the connection: it
            # cannot be settled now, so it is closed rather than handed on.
            # The close then fails as its connection goes: nobody awaits it,
            # so its error is retrieved here (else asyncio logs it as an ERROR).
            closing.add_done_callback(_retrieve)
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of a future nobody awaits as seen."""
    if not future.cancelled():
        future.exception()


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

    __slots__ = ("owner", "thread", "watching")

    def __init__(
        self, db: AsyncDatabase, loop: asyncio.AbstractEventLoop, owner: asyncio.Task[Any]
    ) -> None:
        super().__init__(db, loop)
        self.owner = owner
        self.watching = False
        # The thread running ``loop`` (threading.get_ident()), once seen there;
        # 0 until then. Lets the database find this state without asking for
        # the running loop (see AsyncDatabase._current_state).
        self.thread = 0

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


class PrivateState(AsyncState):
    """The own state of a thread's caller inside a shared state, used while the
    shared connection is in somebody else's transaction: it borrows a
    connection per statement and keeps one only for its own transaction.
    """

    __slots__ = ()
