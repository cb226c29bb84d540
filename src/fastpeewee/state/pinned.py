"""The test-transaction mode: every owner's statements on one pinned connection.

While a :class:`PinnedConnection` is installed on a database (see
:mod:`fastpeewee.testing`), :meth:`AsyncDatabase._current_state` hands every
caller (each asyncio task, each thread, each request scope) a
:class:`PinnedState` of its own, and every statement of every owner runs on
the one connection, inside one transaction the test rolls back at the end.

An owner keeps its own transaction stack (peewee's books), so its blocks nest
as they would on a connection of its own; on the server they become savepoints:

- ``BEGIN`` (any flavour, ``START TRANSACTION``) sets a savepoint of the owner's;
- ``COMMIT`` releases it; ``ROLLBACK`` rolls back to it and releases it;
- ``SET TRANSACTION`` (an isolation level) is skipped: the test transaction's
  level applies;
- peewee's own savepoints pass through, and are tracked the same way.

Savepoints form one stack on the server, but owners may end them in any order
(two tasks, each in its ``atomic()``). A release of a savepoint below the top
only marks it: the server releases it once everything above it is released.
A rollback to a savepoint with another owner's work above it cannot undo one
without the other, so it raises :class:`TestTransactionConflict` instead.

On PostgreSQL a failed statement aborts the whole transaction; a statement of
an owner outside a transaction of its own (autocommit) therefore runs inside
a savepoint of its own, so its failure never poisons the test transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import peewee

from ..bridge import await_, in_bridge
from ..cursor import Cursor, StreamCursor
from ..drivers.base import CopyRequest
from ..errors import BRIDGE_HINT, MissingGreenletBridge
from .task import AsyncState
from .thread import _run_sync

if TYPE_CHECKING:
    from ..database import AsyncDatabase
    from ..drivers.base import Bulk, Connection, Params

__all__ = ["PinnedConnection", "PinnedState", "TestTransactionConflict"]


class TestTransactionConflict(peewee.OperationalError):
    """A rollback inside the test transaction would undo another owner's work too.

    Two owners (tasks, threads) interleaved transactions on the one pinned
    connection, and the one that began first rolled back while the other's
    savepoint was still above it. Run them one after the other in the test,
    or give that test real connections (no test transaction).
    """

    __test__ = False  # not a test class, whatever pytest's name rules say


class _Savepoint:
    """One savepoint on the server's stack; ``released``: its owner let go of it."""

    __slots__ = ("name", "owner", "released")

    def __init__(self, name: str, owner: PinnedState) -> None:
        self.name = name
        self.owner = owner
        self.released = False


def _savepoint_name(sql: str, words: int) -> str:
    """The name in ``SAVEPOINT x``, ``RELEASE SAVEPOINT x``, ``ROLLBACK TO SAVEPOINT x``."""
    parts = sql.strip().rstrip(";").split()
    if len(parts) > words and parts[words].upper() == "SAVEPOINT":
        words += 1  # RELEASE x and ROLLBACK TO x are allowed without the keyword
    return " ".join(parts[words:])


class PinnedConnection:
    """The one connection of a test transaction, shared by every owner."""

    def __init__(self, db: AsyncDatabase, conn: Connection, guard_statements: bool) -> None:
        self.db = db
        self.conn = conn
        # PostgreSQL: a failed statement would abort the whole test transaction.
        self.guard_statements = guard_statements
        self.lock = threading.Lock()
        self.stack: list[_Savepoint] = []
        self.states: list[PinnedState] = []
        self.statements = 0
        self.over = False
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._cv: contextvars.ContextVar[PinnedState] = contextvars.ContextVar(
            f"fastpeewee-pinned-{id(self):x}"
        )
        # Async callers' statements run here, one at a time, off the loop.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fastpeewee-test-transaction")

    # -- owners -------------------------------------------------------------

    def state(self) -> PinnedState:
        """The calling owner's state: the task's, the thread's, or (a worker
        thread started from a task) its task's."""
        state = self._cv.get(None)
        loop = asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)
            if state is not None and state.task is task:
                return state
            state = PinnedState(self, loop, task)
            self._cv.set(state)
            return state
        if state is not None:
            return state  # a thread acting for the task that started it
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = PinnedState(self, None, None)
        return state

    # -- statements ----------------------------------------------------------

    def run(self, state: PinnedState, sql: str, params: Params, bulk: Bulk | None) -> Cursor:
        """Run one statement of ``state``'s owner (blocking)."""
        with self.lock:
            if self.over:
                raise peewee.InterfaceError(
                    "the test transaction is over: a task or thread of the test still "
                    "queries after it ended; wait for it inside the test"
                )
            self.statements += 1
            return self._dispatch(state, sql, params, bulk)

    async def arun(
        self, state: PinnedState, sql: str, params: Params, bulk: Bulk | None
    ) -> Cursor:
        """Run one statement of ``state``'s owner from the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run, state, sql, params, bulk)

    def _dispatch(self, state: PinnedState, sql: str, params: Params, bulk: Bulk | None) -> Cursor:
        head = sql.lstrip()[:24].upper()
        if head.startswith(("BEGIN", "START TRANSACTION")):
            name = f"fastpeewee_txn_{next(self._ids)}"
            self._send(f"SAVEPOINT {name}")
            self.stack.append(_Savepoint(name, state))
            state.open.append(name)
            return Cursor()
        if head.startswith("COMMIT"):
            if state.open:
                self._release(state.open[-1])
                state.open.pop()
            return Cursor()
        if head.startswith("ROLLBACK TO"):
            self._rollback_to(_savepoint_name(sql, 2), state)
            return Cursor()
        if head.startswith("ROLLBACK"):
            if state.open:
                name = state.open[-1]
                self._rollback_to(name, state)
                self._release(name)
                state.open.pop()
            return Cursor()
        if head.startswith("SET TRANSACTION"):
            return Cursor()  # the test transaction's isolation level applies
        if head.startswith("SAVEPOINT"):
            cursor = self._send(sql, params)
            self.stack.append(_Savepoint(_savepoint_name(sql, 1), state))
            return cursor
        if head.startswith("RELEASE"):
            self._release(_savepoint_name(sql, 1))
            return Cursor()
        if not self.guard_statements or state.open:
            return self._send(sql, params, bulk)
        self._send("SAVEPOINT fastpeewee_stmt")
        try:
            cursor = self._send(sql, params, bulk)
        except BaseException:
            self._send("ROLLBACK TO SAVEPOINT fastpeewee_stmt")
            self._send("RELEASE SAVEPOINT fastpeewee_stmt")
            raise
        self._send("RELEASE SAVEPOINT fastpeewee_stmt")
        return cursor

    def _send(self, sql: str, params: Params = (), bulk: Bulk | None = None) -> Cursor:
        if isinstance(bulk, CopyRequest):
            return self._insert_copied(bulk)
        return _run_sync(self.conn, sql, params, bulk)

    def _insert_copied(self, copy: CopyRequest) -> Cursor:
        """A COPY (asyncpg only) as the INSERTs it stands for, on the sync driver."""
        table = _quote(copy.table) if copy.schema is None else (
            f"{_quote(copy.schema)}.{_quote(copy.table)}"
        )  # fmt: skip
        columns = ", ".join(_quote(c) for c in copy.columns)
        marks = ", ".join(["%s"] * len(copy.columns))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
        rows = [tuple(r) for r in copy.records]
        if not rows:
            return Cursor((), 0)
        _run_sync(self.conn, sql, (), rows)
        return Cursor((), len(rows))

    def _index(self, name: str) -> int:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].name == name:
                return index
        raise peewee.OperationalError(f"savepoint {name} is not open in the test transaction")

    def _release(self, name: str) -> None:
        """Let go of ``name``; the server releases it once nothing open is above it."""
        index = self._index(name)
        self.stack[index].released = True
        if index != len(self.stack) - 1:
            return
        lowest = index
        while lowest > 0 and self.stack[lowest - 1].released:
            lowest -= 1
        self._send(f"RELEASE SAVEPOINT {self.stack[lowest].name}")
        del self.stack[lowest:]

    def _rollback_to(self, name: str, state: PinnedState) -> None:
        index = self._index(name)
        foreign = [s for s in self.stack[index + 1 :] if s.owner is not state]
        if foreign:
            raise TestTransactionConflict(
                f"rolling back to savepoint {name} of {state.describe()} would also undo "
                f"the work of {foreign[0].owner.describe()}, whose transaction began later "
                "on the test transaction's one connection. Run such transactions one after "
                "the other in the test, or leave this test out of the test transaction."
            )
        self._send(f"ROLLBACK TO SAVEPOINT {name}")
        dropped = {s.name for s in self.stack[index + 1 :]}
        del self.stack[index + 1 :]
        state.open[:] = [n for n in state.open if n not in dropped]

    # -- the end -------------------------------------------------------------

    def leaks(self) -> list[str]:
        """What owners left open: transactions, connections held by ``connect()``.

        Only a task that was cancelled is excused (its end rolls back and
        releases, as in production, and that is what cancellation is for).
        """
        found = []
        for state in self.states:
            if state.task is not None and state.task.cancelled():
                continue
            if state.open or state.transactions:
                found.append(f"{state.describe()} left a transaction open")
            if state.held:
                found.append(
                    f"{state.describe()} left a connection held (connect() or "
                    "aconnect() without close())"
                )
        return found

    def shut(self) -> None:
        """No statement runs from now on; stop the executor thread."""
        with self.lock:
            self.over = True
        self._executor.shutdown(wait=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PinnedState(AsyncState):
    """The state of one owner (a task, a thread) during a test transaction."""

    __slots__ = ("open", "pin", "task", "thread")

    def __init__(
        self,
        pin: PinnedConnection,
        loop: asyncio.AbstractEventLoop | None,
        task: asyncio.Task[Any] | None,
    ) -> None:
        super().__init__(pin.db, loop)  # type: ignore[arg-type]
        self.pin = pin
        self.task = task
        self.thread = threading.current_thread()
        self.open: list[str] = []  # the owner's BEGINs, as savepoint names
        pin.states.append(self)

    def describe(self) -> str:
        """Who this owner is, for messages."""
        if self.task is not None:
            return f"task {self.task.get_name()!r}"
        return f"thread {self.thread.name!r}"

    @property
    def busy(self) -> bool:
        """True while the owner has anything open, its own transaction included."""
        return bool(self.open) or super().busy

    def serves(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
        return task is self.task

    def execute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        if asyncio._get_running_loop() is not None:
            if in_bridge():
                return await_(self.aexecute(sql, params, ending, bulk))
            raise MissingGreenletBridge("blocking call on the event-loop thread. " + BRIDGE_HINT)
        return self.pin.run(self, sql, params, bulk)

    async def aexecute(
        self, sql: str, params: Params, ending: bool = False, bulk: Bulk | None = None
    ) -> Cursor:
        return await self.pin.arun(self, sql, params, bulk)

    async def astream(
        self, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]]:
        """``iterate()``: the whole result, fetched at once, handed out in batches."""
        result = await self.aexecute(sql, params)
        rows = list(result.fetchall())
        position = 0

        async def fetch(size: int) -> list[Any]:
            nonlocal position
            batch = rows[position : position + size]
            position += len(batch)
            return batch

        async def cleanup() -> None:
            rows.clear()

        cursor = StreamCursor(fetch, cleanup, result.description, batch_size)
        return cursor, cursor.aclose()

    async def aconnect(self) -> Connection:
        self.held = True
        self.conn = self.pin.conn
        return self.pin.conn

    def _hold(self) -> None:
        self.held = True
        self.conn = self.pin.conn

    async def aclose(self) -> bool:
        return self._let_go()

    def close(self) -> bool:
        return self._let_go()

    def _let_go(self) -> bool:
        self._check_close()
        was_open = self.held
        self.held = False
        self.conn = None
        return was_open

    def _forget(self) -> Connection | None:
        super()._forget()
        self.open = []
        return None  # the pinned connection never goes back from here
