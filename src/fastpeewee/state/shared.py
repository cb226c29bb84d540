"""The state of a ``db.scope()`` block: one connection shared by the tasks and threads inside."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..cursor import Cursor, StreamCursor
from .task import AsyncState, PrivateState, TaskState

if TYPE_CHECKING:
    from ..database import AsyncDatabase
    from ..drivers.base import Bulk, Connection, Params


class Reroute(Exception):
    """Internal: the shared connection is in another caller's transaction.

    Raised by :class:`SharedState` before anything was sent; the choke points
    resolve the caller's state again (now its own) and run the statement there.
    """


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

    __slots__ = ("closing", "finished", "others", "owner", "wrote")

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
        # A statement other than a read ran (fastpeewee.replicas): the block's
        # later reads go to the primary (read-your-writes).
        self.wrote = False

    def serves(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        return loop is self.loop and not self.finished

    def serves_thread(self) -> bool:
        return self.loop.is_running() and (not self.finished or self.closing or bool(self.others))

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
        self._lost_guard(sql, False)
        lock = self._locked()
        await self._acquire_busy(lock)
        # Checked again once the connection is ours: a sibling's BEGIN in flight
        # meanwhile made its transaction the connection's, which the stream must
        # stay out of (cancelled mid-fetch, it would lose that transaction).
        owner = self.owner
        if self.finished or (owner is not None and owner is not who):
            lock.release()
            raise Reroute
        cursor, finish = await self._astream_locked(lock, sql, params, batch_size)
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
