"""``AsyncDatabase``: the mixin that turns a peewee database into one for both worlds.

The same object serves ``async def`` code (``await db.list(query)``,
``await Model.aget(...)``, ``async with db.atomic()``) and plain sync code in
threads with no event loop (``User.create(...)``, ``with db.atomic()``).
Every statement takes one of three execution paths, by direction: sync
(``_run``), async (``_arun``) and streaming (``_astream``, for
:meth:`AsyncDatabase.iterate`). There the statement is logged and reported to
the query hooks, and the current connection state (see
:mod:`fastpeewee.state`) and its pool run it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

from . import fast, forks, health, retries
from .bridge import greenlet_spawn
from .contracts.peewee import cursor_wrapper, log_query, notify_hooks
from .cursor import Cursor, StreamCursor
from .drivers.base import Bulk, CopyRequest, Params
from .errors import BRIDGE_HINT, MissingGreenletBridge, mask_password
from .fast import selects
from .fast.bulk import execute_insert, is_multi_insert
from .fast.prepared import PreparedQuery
from .locks import SCHEMA_LOCK, lock
from .pool import Pool, PoolConfig, PoolStats
from .replicas import Replicas, ReplicaStatus, RoutingPin
from .state import (
    AsyncState,
    ConnectionState,
    Reroute,
    SharedState,
    TaskState,
    ThreadState,
    ThreadStates,
)
from .state.pinned import PinnedConnection
from .tracing import Watch
from .transactions import async_atomic, async_savepoint, async_transaction

if TYPE_CHECKING:

    class _PwasyncioMixin:
        """playhouse.pwasyncio's database mixin (untyped: a plain base for mypy)."""

else:
    # A base class so that isinstance(db, playhouse.pwasyncio.AsyncDatabaseMixin)
    # holds: libraries take their async branch on that check (fastapi-pagination's
    # apaginate). Nothing of it runs: AsyncDatabase defines every name it has but
    # the private pool hooks of pwasyncio's own pool, which nothing calls (see
    # tests/integrations/test_pagination.py, which lists them).
    from playhouse.pwasyncio import AsyncDatabaseMixin as _PwasyncioMixin

__all__ = ["AsyncDatabase"]

_peewee_logger = logging.getLogger("peewee")  # where peewee (and log_query) logs SQL
T = TypeVar("T")
_NO_PARAMS: tuple[Any, ...] = ()
_current_task = asyncio.current_task


class _Observed:
    """``with`` around one statement's run: logs it on the ``peewee`` logger and
    reports it to the query hooks, as peewee's ``execute_sql`` does, and to the
    database's watch (slow-statement log, tracing: see :mod:`fastpeewee.tracing`).
    Every execution path goes through here."""

    __slots__ = ("bulk", "db", "params", "sql", "start", "watched")

    def __init__(
        self, db: AsyncDatabase, sql: str, params: Params, bulk: Bulk | None = None
    ) -> None:
        self.db = db
        self.sql = sql
        self.params = params
        self.bulk = bulk
        self.start: float | None = None

    def __enter__(self) -> None:
        if _peewee_logger.isEnabledFor(logging.DEBUG):
            log_query(self.db, self.sql, self.params)
        if self.db.query_hooks:
            self.start = time.perf_counter()
        watch = self.db._watch
        self.watched = None if watch is None else watch.begin(self.db, self.sql, self.bulk)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.watched is not None:
            self.watched.end(exc)
        # Like peewee: errors are reported, a cancellation is not.
        if self.start is not None and (exc is None or isinstance(exc, Exception)):
            notify_hooks(self.db, self.sql, self.params, self.start, exc)


class _Caller:
    """Identifies a thread's context as a caller inside a ``db.scope()`` block."""

    __slots__ = ()


class _CursorShim:
    """What ``db.cursor()`` returns: runs statements through ``execute_sql``."""

    __slots__ = ("_cursor", "_db")

    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._cursor = Cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        self._cursor = self._db.execute_sql(sql, params)
        return self._cursor

    def executescript(self, script: str) -> Cursor:
        """Run several ``;``-separated statements one by one (sqlite3's cursor has it;
        each statement goes through ``execute_sql`` like any other)."""
        pending = ""
        for part in script.split(";"):
            pending += part + ";"
            if not pending.strip(" \t\r\n;"):
                pending = ""  # an empty statement
            elif sqlite3.complete_statement(pending):
                self.execute(pending.strip())
                pending = ""
        if pending.strip(" \t\r\n;"):
            self.execute(pending.strip().removesuffix(";"))  # incomplete: the driver says why
        return self._cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class AsyncDatabase(_PwasyncioMixin):
    """Pooled, task-aware connection handling for a peewee ``Database`` subclass.

    Mixed in before the peewee class: ``class AsyncSqliteDatabase(AsyncDatabase,
    peewee.SqliteDatabase)``. Backends implement :meth:`_open_sync` and
    :meth:`_open_async` (or override :meth:`_new_sync_pool` and
    :meth:`_new_async_pool`).

    ``fast_paths=False`` keeps this database on peewee's own code paths, off
    the speed layer (see :mod:`fastpeewee.fast`); ``db.fast_paths`` tells which.

    ``slow_query_seconds=0.5`` logs statements slower than that on the
    ``fastpeewee.slow`` logger (SQL without values, duration, pool wait).
    """

    if TYPE_CHECKING:  # provided by the peewee Database class mixed in after us
        database: Any
        deferred: bool
        query_hooks: list[Any]
        connect_params: dict[str, Any]
        server_version: Any

        def transaction_depth(self) -> int: ...

    # Most parameters one statement may carry; bigger multi-row inserts are batched.
    max_query_params = 32766
    # Seconds a query waits for this task's connection while iterate() streams on it.
    streaming_timeout = 5.0
    # True when async connections belong to the loop that opened them (asyncpg).
    _loop_bound = False

    def __init__(
        self,
        database: str | None,
        *,
        pool_size: int = 10,
        pool_min_size: int = 1,
        acquire_timeout: float = 10.0,
        max_idle: float | None = 300.0,
        max_lifetime: float | None = 3600.0,
        check_idle_after: float | None = 5.0,
        ping_timeout: float = 2.0,
        max_waiting: int = 0,
        connect_backoff: float = 0.1,
        connect_backoff_max: float = 5.0,
        fast_paths: bool = True,
        replicas: Sequence[AsyncDatabase | str] | None = None,
        max_replica_lag: float | None = None,
        replica_check_interval: float = 1.0,
        slow_query_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.pool_config = PoolConfig(
            pool_size=pool_size,
            pool_min_size=min(pool_min_size, pool_size),
            acquire_timeout=acquire_timeout,
            max_idle=max_idle,
            max_lifetime=max_lifetime,
            check_idle_after=check_idle_after,
            ping_timeout=ping_timeout,
            max_waiting=max_waiting,
            connect_backoff=connect_backoff,
            connect_backoff_max=connect_backoff_max,
        )
        self._cv: contextvars.ContextVar[AsyncState] = contextvars.ContextVar(
            f"fastpeewee-{id(self):x}"
        )
        # Who is calling, inside a db.scope() block: the task, or a token of the
        # thread's context (see SharedState). Threads inherit their task's.
        self._who: contextvars.ContextVar[object] = contextvars.ContextVar(
            f"fastpeewee-who-{id(self):x}"
        )
        self._threads = ThreadStates()
        self._pools_lock = threading.Lock()
        self._sync_pool: Pool[Any] | None = None
        self._async_pool: Pool[Any] | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        # A test transaction (fastpeewee.testing): every owner on its one connection.
        self._pinned: PinnedConnection | None = None
        # False: peewee's own paths only (see fastpeewee.fast; the environment may force it).
        self.fast_paths = bool(fast_paths) and fast.ENABLED
        # None: no slow-statement log, no tracer, nothing done per statement.
        self._watch: Watch | None = Watch.of(slow_query_seconds, None)
        # Past pwasyncio's mixin, whose __init__ would set up a pool of its own.
        super(_PwasyncioMixin, self).__init__(database, **kwargs)  # type: ignore[call-arg]
        # Read replicas (fastpeewee.replicas): None keeps every statement here.
        self._replicas: Replicas | None = None
        if replicas:
            self._replicas = Replicas(self, replicas, max_replica_lag, replica_check_interval)
        forks.track(self)  # a forked child forgets the connections it inherited

    # -- connection state ---------------------------------------------------------------

    @property
    def _state(self) -> ConnectionState:
        """peewee's connection state, resolved for the current task or thread."""
        return self._current_state()

    @_state.setter
    def _state(self, value: Any) -> None:
        pass  # peewee's Database.__init__ assigns a thread-local here; ConnectionState replaces it

    def _current_state(self) -> ConnectionState:
        if self._pinned is not None:
            return self._pinned.state()
        state = self._cv.get(None)
        # The common case first: the task's own state, found before on this
        # thread. Cheaper than asking for the running loop, which costs a
        # getpid() system call (asyncio checks for a fork): the task running on
        # the state's loop is its owner, and this is the loop's thread. (A
        # forked child never gets here: it starts from fresh context variables,
        # see forks.py.)
        if (
            type(state) is TaskState
            and state.thread == threading.get_ident()
            and _current_task(state.loop) is state.owner
        ):
            return state
        loop = asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)
            if state is not None:
                if type(state) is SharedState:
                    if state.loop is loop and task is not None:
                        if self._who.get(None) is not task:
                            self._who.set(task)  # its threads act for it
                        found = state.resolve(task)
                        if found is not None:
                            return found
                elif state.serves(loop, task):
                    if type(state) is TaskState:
                        state.thread = threading.get_ident()  # see above
                    return state
            if task is None:
                raise peewee.InterfaceError(
                    "database used on the event-loop thread outside any asyncio task; "
                    "call it from a coroutine running in a task"
                )
            state = TaskState(self, loop, task)
            state.thread = threading.get_ident()
            self._cv.set(state)
            return state
        if state is not None and state.serves_thread():
            if type(state) is not SharedState:
                return state
            who = self._who.get(None)
            if who is None:
                who = _Caller()
                self._who.set(who)  # for the rest of this thread's context
            found = state.resolve(who)
            if found is not None:
                return found
        return self._thread_state()

    def _thread_state(self) -> ThreadState:
        state = self._threads.state
        if state is None:
            state = self._threads.state = ThreadState(self)
        return state

    def _async_state(self) -> AsyncState:
        state = self._current_state()
        if not isinstance(state, AsyncState):
            raise RuntimeError("this coroutine must run on the event loop that awaits it")
        return state

    @asynccontextmanager
    async def scope(self, *, hold: bool = True) -> AsyncIterator[None]:
        """Share one connection with everything started inside.

        Tasks created inside the block and sync code sent to worker threads
        (``asyncio.to_thread``, FastAPI's threadpool) all run their queries on
        the block's single connection, taken on first use and given back, with
        any open transaction rolled back, when the block exits. Example::

            async with db.scope():
                await asyncio.to_thread(sync_report)   # same connection

        A transaction belongs to the task that began it (and the threads it
        runs): other tasks of the block never run inside it, and their own
        ``atomic()`` blocks are transactions of their own, on connections of
        their own. A task whose transaction is still open when the block
        exits keeps it, with its connection, until the task ends.

        ``hold=False`` gives the connection back after each statement outside
        a transaction, for long-lived scopes that mostly idle (a WebSocket).
        Nested blocks (a middleware and a dependency, say) share the outer
        block's state.
        """
        loop = asyncio.get_running_loop()
        current = self._cv.get(None)
        if isinstance(current, SharedState) and current.serves(loop, None):
            yield
            return
        state = SharedState(self, loop, hold)
        token = self._cv.set(state)
        who = self._who.set(asyncio.current_task(loop) or _Caller())
        try:
            yield
        finally:
            self._who.reset(who)
            self._cv.reset(token)
            await state.finish()

    # -- pools ------------------------------------------------------------------

    def _new_sync_pool(self) -> Pool[Any]:
        """Return a new pool for threads (called with the pools lock held)."""
        return Pool(self._pool_name() + "[sync]", self.pool_config, open_sync=self._open_sync)

    def _new_async_pool(self) -> Pool[Any]:
        """Return a new pool for tasks (called with the pools lock held)."""
        return Pool(self._pool_name(), self.pool_config, open_async=self._open_async)

    def _open_sync(self, timeout: float) -> Any:
        """Open a driver connection for threads, within ``timeout`` seconds."""
        raise NotImplementedError

    async def _open_async(self, timeout: float) -> Any:
        """Open a driver connection for tasks, within ``timeout`` seconds."""
        raise NotImplementedError

    def _pool_name(self) -> str:
        return f"{type(self).__name__}({mask_password(str(self.database))!r})"

    def _check_initialized(self) -> None:
        if self.deferred:
            raise peewee.InterfaceError(
                "Error, database must be initialized before opening a connection."
            )

    def _sync_pool_get(self) -> Pool[Any]:
        pool = self._sync_pool
        if pool is not None and not pool.closed:
            return pool
        with self._pools_lock:
            self._check_initialized()
            if self._sync_pool is None or self._sync_pool.closed:
                self._sync_pool = self._watched(self._new_sync_pool())
            return self._sync_pool

    def _async_pool_get(self, loop: asyncio.AbstractEventLoop | None = None) -> Pool[Any]:
        """The task pool, for the running loop (``loop``, when the caller knows it)."""
        pool = self._async_pool
        if (
            pool is not None
            and not pool.closed
            and (not self._loop_bound or self._async_loop is (loop or asyncio._get_running_loop()))
        ):
            return pool
        return self._switch_async_pool()

    def _switch_async_pool(self) -> Pool[Any]:
        """Open the async pool, or replace one whose event loop has stopped."""
        loop = asyncio.get_running_loop()
        with self._pools_lock:
            self._check_initialized()
            old = self._async_pool
            if old is not None and not old.closed:
                previous = self._async_loop
                if not self._loop_bound or previous is None:
                    self._async_loop = loop
                    return old
                if previous.is_running():
                    raise peewee.InterfaceError(
                        f"{type(self).__name__} is in use by another running event loop; "
                        "await db.close_pool() on that loop before using it on this one"
                    )
            self._async_pool = self._watched(self._new_async_pool())
            self._async_loop = loop
            pool = self._async_pool
        if old is not None and not old.closed:
            old.terminate()  # connections of a stopped loop cannot be reused
        return pool

    def _watched(self, pool: Pool[Any]) -> Pool[Any]:
        """Time ``pool``'s acquires when this database is watched (see ``slow_query_seconds``)."""
        pool.on_acquire = None if self._watch is None else self._watch.acquired
        return pool

    @property
    def slow_query_seconds(self) -> float | None:
        """Statements slower than this are logged on ``fastpeewee.slow``; None logs none.

        Example::

            db.slow_query_seconds = 0.2
        """
        return None if self._watch is None else self._watch.slow_seconds

    @slow_query_seconds.setter
    def slow_query_seconds(self, value: float | None) -> None:
        self._set_watch(Watch.of(value, None if self._watch is None else self._watch.tracer))

    def _set_watch(self, watch: Watch | None) -> None:
        """Watch this database's statements and pools with ``watch`` (None: stop)."""
        self._watch = watch
        for pool in (self._sync_pool, self._async_pool):
            if pool is not None:
                self._watched(pool)

    async def warm_pool(self) -> int:
        """Open the task pool's ``pool_min_size`` connections now; return how many are idle.

        For start-up hooks: the first requests then find connections ready
        instead of each paying for a connect. Connections already open count.
        """
        self._check_initialized()
        pool = self._async_pool_get()
        taken: list[Any] = []
        try:
            while len(taken) < self.pool_config.pool_min_size:
                taken.append(await pool.aacquire())
        finally:
            for conn in taken:
                pool.release(conn)
        return pool.stats().idle

    async def aping(self, timeout: float | None = None) -> float:
        """One round trip to the database on a pooled connection; return its seconds.

        Bounded by ``timeout`` (``ping_timeout`` by default), connecting
        included; raises when the database does not answer (see
        :mod:`fastpeewee.health`). Example::

            await db.aping(timeout=1.0)      # raises peewee.OperationalError when down
        """
        return await health.aping(self, timeout)

    def ping(self, timeout: float | None = None) -> float:
        """Sync twin of :meth:`aping`, for threads."""
        return health.ping(self, timeout)

    def retry_transaction(
        self, attempts: int = 5, **policy: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function to run in ``atomic()``, again after a serialization
        failure or a deadlock (see :mod:`fastpeewee.retries`). Example::

            @db.retry_transaction(attempts=5)
            async def transfer(src, dst, amount): ...
        """
        return retries.retry_transaction(self, retries.RetryPolicy(attempts=attempts, **policy))

    async def arun_in_transaction(
        self, fn: Callable[[], Coroutine[Any, Any, T]], attempts: int = 5, **policy: Any
    ) -> T:
        """``await fn()`` in ``atomic()``, again after a serialization failure or a deadlock."""
        return await retries.arun_in_transaction(
            self, fn, retries.RetryPolicy(attempts=attempts, **policy)
        )

    def run_in_transaction(self, fn: Callable[[], T], attempts: int = 5, **policy: Any) -> T:
        """Sync twin of :meth:`arun_in_transaction`, for threads."""
        return retries.run_in_transaction(
            self, fn, retries.RetryPolicy(attempts=attempts, **policy)
        )

    def pool_stats(self) -> list[PoolStats]:
        """Counters of this database's open pools (one for SQLite, two for PostgreSQL)."""
        pools = {id(p): p for p in (self._async_pool, self._sync_pool) if p is not None}
        return [p.stats() for p in pools.values()]

    def _release_later(self, state: AsyncState, conn: Any) -> None:
        """Give back the connection of a task that ended without closing it."""
        try:
            self._spawn_release(state._return(conn), state.loop)
        except RuntimeError:  # the loop is closing: close outright
            conn.pool.discard(conn)

    def _spawn_release(
        self, coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Task[None]:
        """Run a connection's way back to the pool as a task of its own.

        It finishes even if whoever started it is cancelled, and
        :meth:`close_pool` waits for it.
        """
        task = (loop or asyncio.get_running_loop()).create_task(coro)
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    async def close_pool(self) -> None:
        """Close the pools: wait up to ``acquire_timeout`` for checked-out
        connections to come back, then close whatever remains.

        A later query opens a fresh pool. Example::

            await db.close_pool()   # e.g. in the app's shutdown hook
        """
        state = self._cv.get(None)
        if isinstance(state, TaskState) and state.owner is asyncio.current_task():
            await state.aclose()
        while self._releasing:
            await asyncio.gather(*list(self._releasing), return_exceptions=True)
        with self._pools_lock:
            pools = {id(p): p for p in (self._async_pool, self._sync_pool) if p is not None}
            self._async_pool = self._sync_pool = None
        deadline = time.monotonic() + self.pool_config.acquire_timeout
        for pool in pools.values():
            pool.close()
            # Connections come back from tasks and threads alike: poll the counter.
            while pool.stats().in_use and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            pool.terminate()
        if self._replicas is not None:
            await self._replicas.aclose()

    def close_all(self) -> None:
        """Sync twin of :meth:`close_pool` for scripts: close the pools now.

        Connections still checked out are closed when they come back.
        """
        with self._pools_lock:
            pools = {id(p): p for p in (self._async_pool, self._sync_pool) if p is not None}
            self._async_pool = self._sync_pool = None
        for pool in pools.values():
            pool.close()
        if self._replicas is not None:
            self._replicas.close()

    # -- read replicas ------------------------------------------------------------

    def primary(self) -> RoutingPin:
        """Run the reads inside on the primary: ``with db.primary():`` (or ``async with``).

        For a read that must see a write made outside the current request, or a
        ``SELECT`` calling a function that writes. A no-op without replicas.
        """
        return RoutingPin(self._pin_var(), ("primary", True))

    def replica(self, *, fallback: bool = True) -> RoutingPin:
        """Run the reads inside on a replica, even in a transaction or after a write.

        ``fallback=False``: raise ``OperationalError`` when no replica is
        healthy, instead of reading the primary. Writes still go to the primary.
        """
        return RoutingPin(self._pin_var(), ("replica", fallback))

    def _pin_var(self) -> contextvars.ContextVar[tuple[str, bool] | None]:
        if self._replicas is not None:
            return self._replicas.pin
        pin: contextvars.ContextVar[tuple[str, bool] | None] | None = self.__dict__.get("_pin")
        if pin is None:  # no replicas: a pin changes nothing, but the code stays portable
            pin = self.__dict__["_pin"] = contextvars.ContextVar("fastpeewee-pin", default=None)
        return pin

    @property
    def replicas(self) -> builtins.list[AsyncDatabase]:
        """The replica databases reads may go to (empty without ``replicas=``)."""
        return builtins.list(self._replicas.databases) if self._replicas is not None else []

    def replica_status(self) -> builtins.list[ReplicaStatus]:
        """What the last health check found for each replica."""
        return self._replicas.status() if self._replicas is not None else []

    # -- the execution paths ------------------------------------------------------
    #
    # One path per direction: _run (sync code), _arun (async code), _astream
    # (iterate()). Every statement, executemany and COPY included, takes one of
    # them; each goes through _Observed, where logging, query hooks, the
    # slow-statement log and tracing happen (the last two only when watched).

    def execute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        """Run one statement from sync code (a thread, or inside ``db.run``)."""
        return self._run(sql, params or _NO_PARAMS)

    def execute(self, query: Any, **context_options: Any) -> Any:
        """peewee's ``Database.execute``; fast paths batch or COPY big multi-row inserts."""
        if fast.enabled(self) and is_multi_insert(query):
            cursor = execute_insert(self, query, context_options)
            if cursor is not None:
                return cursor
        return super().execute(query, **context_options)  # type: ignore[misc]

    def _copy_supported(self) -> bool:
        """True when multi-row inserts may use COPY here (the backend says)."""
        return False

    def _executemany_supported(self) -> bool:
        """True when the backend's driver runs :meth:`_executemany` as one executemany."""
        return False

    def _executemany(self, sql: str, rows: Sequence[Params]) -> Cursor:
        """Run ``sql`` once per row of ``rows``, all or none, from sync code."""
        return self._run(sql, rows, False, rows)

    def _copy(
        self, table: str, schema: str | None, columns: list[str], records: Iterable[Params]
    ) -> int:
        """COPY ``records`` into ``table`` from sync code; return the row count."""
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        request = CopyRequest(table, schema, columns, records)
        return self._run(sql, _NO_PARAMS, False, request).rowcount

    def _run(
        self,
        sql: str,
        params: Params,
        ending: bool = False,
        bulk: Bulk | None = None,
        observed: bool = False,
    ) -> Cursor:
        """The sync execution path; ``ending`` and ``bulk`` as for
        :meth:`~fastpeewee.state.ConnectionState.execute`."""
        if not observed and (
            self.query_hooks
            or self._watch is not None
            or _peewee_logger.isEnabledFor(logging.DEBUG)
        ):
            with _Observed(self, sql, params, bulk):
                return self._run(sql, params, ending, bulk, True)
        replicas = self._replicas
        if replicas is not None and bulk is None:
            replica = replicas.target(sql)
            if replica is not None:
                done = replicas.run(replica, sql, params)
                if done is not None:
                    return done
        while True:
            state = self._current_state()
            try:
                return state.execute(sql, params, ending, bulk)
            except Reroute:
                continue  # the shared connection is in another caller's transaction
            except MissingGreenletBridge:
                raise MissingGreenletBridge(
                    f"blocking query on the event-loop thread: {sql}. {BRIDGE_HINT}"
                ) from None

    async def aexecute_sql(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        """Run one statement from async code.

        Example::

            cursor = await db.aexecute_sql("SELECT 1")
        """
        if not (
            self.query_hooks
            or self._watch is not None
            or self._replicas is not None
            or _peewee_logger.isEnabledFor(logging.DEBUG)
        ):
            # _arun's common case (nothing to observe or route, a task's own
            # state, which never reroutes) decided here, the conditions spelled
            # out as there: one frame less on the way to the driver and back.
            state = self._async_state()
            if type(state) is TaskState:
                return await state.aexecute(sql, params or _NO_PARAMS)
        return await self._arun(sql, params or _NO_PARAMS)

    async def _arun(
        self, sql: str, params: Params = _NO_PARAMS, ending: bool = False, observed: bool = False
    ) -> Cursor:
        """The async execution path; ``ending`` as for :meth:`_run`."""
        if not observed and (
            self.query_hooks
            or self._watch is not None
            or _peewee_logger.isEnabledFor(logging.DEBUG)
        ):
            with _Observed(self, sql, params):
                return await self._arun(sql, params, ending, True)
        replicas = self._replicas
        if replicas is not None:
            replica = replicas.target(sql)
            if replica is not None:
                done = await replicas.arun(replica, sql, params)
                if done is not None:
                    return done
        while True:
            try:
                return await self._async_state().aexecute(sql, params, ending)
            except Reroute:
                continue  # the shared connection is in another caller's transaction

    async def _astream(
        self, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]]:
        """The streaming execution path: open a server-side cursor; the returned
        coroutine closes it. The query hooks hear of it once it is open."""
        with _Observed(self, sql, params):
            replicas = self._replicas
            if replicas is not None:
                replica = replicas.target(sql)
                if replica is not None:
                    opened = await replicas.astream(replica, sql, params, batch_size)
                    if opened is not None:
                        return opened
            while True:
                try:
                    return await self._async_state().astream(sql, params, batch_size)
                except Reroute:
                    continue

    def after_commit(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """peewee's ``after_commit``: run ``fn`` once the outermost transaction commits."""
        return super(_PwasyncioMixin, self).after_commit(fn)  # type: ignore[misc, no-any-return]

    def _plain_begin(self) -> bool:
        """True when ``begin()`` without arguments only sends ``BEGIN`` (backends say)."""
        return False

    def _overrides(self, name: str) -> bool:
        """True when this database's class replaces :class:`AsyncDatabase`'s ``name``."""
        return getattr(type(self), name) is not getattr(AsyncDatabase, name)

    def cursor(self, named_cursor: Any = None) -> _CursorShim:
        """A DB-API-like cursor whose ``execute`` goes through :meth:`execute_sql`."""
        return _CursorShim(self)

    def commit(self) -> None:
        """Send COMMIT for peewee's transaction helpers (``InterfaceError`` when
        nothing is open here, as in peewee)."""
        self._must_be_open("commit")
        self._run("COMMIT", _NO_PARAMS, True)

    def rollback(self) -> None:
        """Send ROLLBACK for peewee's transaction helpers (``InterfaceError`` when
        nothing is open here, as in peewee)."""
        self._must_be_open("rollback")
        self._run("ROLLBACK", _NO_PARAMS, True)

    def _must_be_open(self, what: str) -> None:
        # Open: a connection held, a transaction begun (or lost: its rollback is
        # the way out), in this thread or task.
        if not self._current_state().busy:
            raise peewee.InterfaceError(f"Cannot {what}, database connection not open.")

    # -- connections ------------------------------------------------------------

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Hold a connection for this thread or task until :meth:`close`."""
        self._check_initialized()
        state = self._current_state()
        return state.connect(reuse_if_open)

    async def aconnect(self) -> Any:
        """Hold a connection for this task until :meth:`aclose` or the task ends."""
        self._check_initialized()
        return await self._async_state().aconnect()

    def close(self) -> bool:
        """Give this thread's or task's held connection back to the pool."""
        return self._current_state().close()

    async def aclose(self) -> bool:
        """Give this task's held connection back to the pool."""
        return await self._async_state().aclose()

    def release_thread(self) -> bool:
        """Give back whatever this thread still holds; return whether it held anything.

        For the end of a request in a sync (WSGI) framework, whose worker
        thread serves the next request next: a connection kept by
        :meth:`connect` without :meth:`close` goes back to the pool, and a
        transaction left open (``begin()`` with no commit, a handler that
        raised past its own clean-up) is rolled back first, with a warning.
        """
        state = self._threads.state
        return state is not None and state.release()

    def is_closed(self) -> bool:
        """True when this thread or task holds no connection."""
        if (
            self._cv.get(None) is None
            and self._pinned is None
            and (asyncio._get_running_loop() is not None or self._threads.state is None)
            and not self._overrides("_current_state")
        ):
            return True  # no state here yet: do not make some just to say so
        return self._current_state().closed

    def is_connection_usable(self) -> bool:
        """True when this thread or task holds a connection that still looks alive."""
        state = self._current_state()
        return state.conn is not None and state.conn.usable()

    def connection(self) -> Any:
        """The driver connection held by this thread or task (connecting if needed)."""
        if self.is_closed():
            self.connect()
        conn = self._current_state().conn
        if conn is None:  # held but not yet checked out
            self.execute_sql("SELECT 1")
            conn = self._current_state().conn
        return conn.raw if conn is not None else None

    def dispose(self) -> None:
        """Forget this thread's or task's connection state, releasing its connection."""
        state = self._current_state()
        state.transactions = []
        if isinstance(state, AsyncState):
            conn = state._forget()
            if conn is not None:
                self._release_later(state, conn)
        else:
            state.close()

    async def __aenter__(self) -> AsyncDatabase:
        await self.aconnect()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.aclose()

    # -- transactions -----------------------------------------------------------

    def atomic(self, *args: Any, **kwargs: Any) -> async_atomic:
        """A transaction (or a savepoint when nested); ``with`` or ``async with``."""
        return async_atomic(self, *args, **kwargs)

    def transaction(self, *args: Any, **kwargs: Any) -> async_transaction:
        """A transaction; nested ones join the outer one. ``with`` or ``async with``."""
        return async_transaction(self, *args, **kwargs)

    def savepoint(self) -> async_savepoint:
        """A savepoint in the open transaction; ``with`` or ``async with``."""
        return async_savepoint(self)

    # -- the async API of playhouse.pwasyncio -----------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run sync peewee code so that its queries wait on the event loop.

        Example::

            user = await db.run(User.get_or_create, name="ann")
        """
        return await greenlet_spawn(fn, *args, **kwargs)

    async def aexecute(self, query: Any) -> Any:
        """Execute a query bound to this database; returns what ``execute()`` returns."""
        query.bind(self)
        if fast.enabled(self) and selects.native(self, query):
            return await selects.aexecute_select(self, query)
        return await self.run(query.execute)

    async def get(self, query: Any) -> Any:
        """The first row of ``query``; raises ``DoesNotExist`` when there is none."""
        if fast.enabled(self) and selects.native(self, query) and selects.gets_like_peewee(query):
            return await selects.aget(self, query)
        return await self.run(query.get)

    def prepare(self, query: Any) -> PreparedQuery:
        """Compile ``query`` (written with :class:`~fastpeewee.Param` placeholders) once,
        to run it with new values at the raw driver's speed.

        Example::

            by_id = db.prepare(User.select().where(User.id == Param("id")))
            ann = await by_id.get(id=5)

        See :class:`~fastpeewee.fast.prepared.PreparedQuery`; raises
        :class:`~fastpeewee.Uncompilable` for a query that renders its values
        as SQL literals.
        """
        return PreparedQuery(self, query)

    async def first(self, query: Any, n: int = 1) -> Any:
        """The first row (or ``n`` rows) of ``query``, or None."""
        if fast.enabled(self) and selects.firsts_natively(self, query):
            return await selects.afirst(self, query, n)
        return await self.run(query.first, n=n)

    async def list(self, query: Any) -> builtins.list[Any]:
        """All rows of ``query`` as a list."""
        if fast.enabled(self) and selects.native(self, query):
            return await selects.alist(self, query)
        return await self.run(list, query)

    async def scalar(self, query: Any) -> Any:
        """The first column of the first row of ``query``."""
        return await self.run(query.scalar)

    async def count(self, query: Any) -> int:
        """The number of rows ``query`` would return."""
        return await self.run(query.count)

    async def exists(self, query: Any) -> bool:
        """Whether ``query`` returns any row."""
        return await self.run(query.exists)

    async def aprefetch(self, query: Any, *subqueries: Any) -> builtins.list[Any]:
        """``peewee.prefetch`` awaited: one query per relation, whatever the row count."""
        return await self.run(lambda: list(peewee.prefetch(query, *subqueries)))

    def create_tables(self, models: Iterable[Any], **options: Any) -> None:
        """peewee's ``create_tables``, in one transaction holding
        :data:`~fastpeewee.locks.SCHEMA_LOCK`: workers starting at once take
        turns instead of racing each other's ``CREATE TABLE IF NOT EXISTS``."""
        with lock(self, SCHEMA_LOCK):
            super(_PwasyncioMixin, self).create_tables(models, **options)  # type: ignore[misc]

    async def acreate_tables(self, models: Sequence[Any], **options: Any) -> None:
        """``create_tables`` awaited (under the same lock)."""
        await self.run(self.create_tables, models, **options)

    async def adrop_tables(self, models: Sequence[Any], **options: Any) -> None:
        """``drop_tables`` awaited."""
        await self.run(self.drop_tables, models, **options)  # type: ignore[attr-defined]

    async def iterate(self, query: Any, buffer_size: int | None = None) -> AsyncIterator[Any]:
        """Stream the rows of ``query`` from a server-side cursor.

        Example::

            async for user in db.iterate(User.select()):
                ...
        """
        query.bind(self)
        sql, params = query.sql()
        cursor, finish = await self._astream(sql, params or _NO_PARAMS, buffer_size or 100)
        try:
            rows = cursor_wrapper(query, cursor).iterator()
            while await cursor.fill():
                yield next(rows)
        finally:
            await finish

    @property
    def Model(self) -> type[Any]:
        """A model base class bound to this database, with the async model API."""
        model = self.__dict__.get("_async_model")
        if model is None:
            from .model import AsyncModel

            meta = type("Meta", (), {"database": self})
            model = type("AsyncBaseModel", (AsyncModel,), {"Meta": meta})
            self.__dict__["_async_model"] = model
        return model
