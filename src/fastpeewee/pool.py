"""A connection pool that serves threads and asyncio tasks alike.

Policy (sizes, timeouts, recycling, liveness, statistics) lives here once; the
backends only say how to open, check and close one connection. A thread waits
on an ``Event``, a task on a future of its own loop; a returned connection is
handed straight to the oldest waiter, so waiting is fair and no slot is lost
when a waiter times out or is cancelled at the moment of hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .backoff import ConnectBackoff
from .drivers.base import cancel_requests
from .errors import PoolClosed, PoolError, PoolTimeout, TooManyWaiters

__all__ = ["Pool", "PoolConfig", "PoolStats", "Poolable"]

logger = logging.getLogger("fastpeewee.pool")


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """How a pool sizes, bounds and recycles its connections.

    Example::

        PoolConfig(pool_size=20, acquire_timeout=5.0, max_lifetime=600.0)
    """

    pool_size: int = 10
    """Most connections open at once (the database's ``pool_size=``, as in
    playhouse.pwasyncio)."""
    pool_min_size: int = 1
    """Connections kept open even when idle longer than ``max_idle`` (the
    database's ``pool_min_size=``)."""
    acquire_timeout: float = 10.0
    """Seconds to wait for a free connection, opening one included."""
    max_idle: float | None = 300.0
    """Close connections idle this long (beyond ``pool_min_size``); None keeps them."""
    max_lifetime: float | None = 3600.0
    """Close connections this old when they come back; None keeps them."""
    check_idle_after: float | None = 5.0
    """Ping a connection idle this long before handing it out; None never pings."""
    ping_timeout: float = 2.0
    """Seconds that ping may take, and never more than half of what is left of
    ``acquire_timeout``: a connection that does not answer in time is dropped,
    as are those idle longer than it, and a fresh one opened in the other half."""
    max_waiting: int = 0
    """Most callers queued for a connection; 0 means no limit."""
    connect_backoff: float = 0.1
    """After connects failed twice in a row with the database down, seconds
    during which nobody tries again (callers get ``PoolBackoff`` at once),
    doubling with each further failure; 0 turns back-off off. See
    :mod:`fastpeewee.backoff`."""
    connect_backoff_max: float = 5.0
    """The longest back-off window, so a database that comes back is used again
    within about this many seconds."""

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        if not 0 <= self.pool_min_size <= self.pool_size:
            raise ValueError(
                f"pool_min_size must be between 0 and pool_size={self.pool_size}, "
                f"got {self.pool_min_size}"
            )
        if self.acquire_timeout <= 0:
            raise ValueError(f"acquire_timeout must be > 0, got {self.acquire_timeout}")
        if self.ping_timeout <= 0:
            raise ValueError(f"ping_timeout must be > 0, got {self.ping_timeout}")
        if self.max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {self.max_waiting}")
        if not 0 <= self.connect_backoff <= self.connect_backoff_max:
            raise ValueError(
                "connect_backoff must be between 0 and connect_backoff_max="
                f"{self.connect_backoff_max}, got {self.connect_backoff}"
            )


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of one pool's counters."""

    name: str
    pool_size: int
    size: int
    """Connections open or being opened."""
    idle: int
    in_use: int
    waiting: int
    opened: int
    """Connections opened since the pool started."""
    closed: int
    """Connections closed since the pool started (expired, broken or at shutdown)."""
    timeouts: int
    """Acquires that gave up after ``acquire_timeout``."""


class Poolable(Protocol):
    """What the pool needs from a connection."""

    created_at: float
    released_at: float
    broken: bool
    dirty: bool  # its session was changed: close it on release
    unsettled: bool  # a statement of it was interrupted: settle it or close it
    pool: Any

    def usable(self) -> bool: ...
    def usable_idle(self) -> bool: ...
    def close(self) -> None: ...
    def ping(self, timeout: float) -> None: ...
    async def aping(self) -> None: ...


C = TypeVar("C", bound=Poolable)


class _Create:
    """Hand-over token: a slot is reserved for the waiter, who opens a connection."""


_CREATE = _Create()


class _SyncWaiter:
    __slots__ = ("event", "item")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.item: object = None

    def deliver(self, item: object, pool: Pool[C]) -> bool:
        self.item = item
        self.event.set()
        return True


class _AsyncWaiter:
    __slots__ = ("fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fut: asyncio.Future[object] = loop.create_future()

    def deliver(self, item: object, pool: Pool[C]) -> bool:
        if _running_loop() is self.loop:
            if self.fut.done():
                return False
            self.fut.set_result(item)
            return True
        try:
            self.loop.call_soon_threadsafe(self._land, item, pool)
        except RuntimeError:  # that loop is closed: nobody will ever wait there
            return False
        return True

    def _land(self, item: object, pool: Pool[C]) -> None:
        if self.fut.done():  # cancelled or timed out in the meantime
            pool._give_back(item)
        else:
            self.fut.set_result(item)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


class Pool(Generic[C]):
    """A bounded pool of connections, shared by threads and asyncio tasks.

    Example::

        conn = await pool.aacquire()
        try: ...
        finally: pool.release(conn)
    """

    on_acquire: Callable[[Pool[Any], float], None] | None = None
    """Told the pool and the seconds each successful acquire took (waiting and
    opening included); a watched database sets it (see :mod:`fastpeewee.tracing`)."""

    def __init__(
        self,
        name: str,
        config: PoolConfig,
        *,
        open_sync: Callable[[float], C] | None = None,
        open_async: Callable[[float], Awaitable[C]] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._open_sync = open_sync
        self._open_async = open_async
        self._on_close = on_close
        self._lock = threading.Lock()
        self._idle: deque[C] = deque()
        self._in_use: set[C] = set()
        self._waiters: deque[_SyncWaiter | _AsyncWaiter] = deque()
        self._size = 0
        self._closed = False
        self._opened = self._closed_count = self._timeouts = 0
        # Connections of threads that ended holding them (see orphan()).
        self._orphans: deque[C] = deque()
        self.backoff = ConnectBackoff(name, config.connect_backoff, config.connect_backoff_max)

    # -- public -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def stats(self) -> PoolStats:
        """Return the current counters."""
        if self._orphans:
            self._reap_orphans()
        with self._lock:
            return PoolStats(
                name=self.name,
                pool_size=self.config.pool_size,
                size=self._size,
                idle=len(self._idle),
                in_use=len(self._in_use),
                waiting=len(self._waiters),
                opened=self._opened,
                closed=self._closed_count,
                timeouts=self._timeouts,
            )

    def acquire(self) -> C:
        """Take a connection, blocking this thread up to ``acquire_timeout`` seconds."""
        now = self._start_acquire(self._open_sync, "asyncio tasks")
        item = self._take(None, now)
        if self._fit(item, now):
            return self._handed(item, now)  # type: ignore[arg-type]
        deadline = now + self.config.acquire_timeout
        while True:
            if item is None:
                item = self._wait_sync(deadline)
            conn = self._ready_sync(item, deadline)
            if conn is not None:
                return self._handed(conn, now)
            item = self._take(None)

    async def aacquire(self) -> C:
        """Take a connection, waiting on the running loop up to ``acquire_timeout`` seconds."""
        now = self._start_acquire(self._open_async, "threads")
        item = self._take(None, now)
        if self._fit(item, now):  # the common case: no wait, no I/O, no further frame
            return self._handed(item, now)  # type: ignore[arg-type]
        deadline = now + self.config.acquire_timeout
        while True:
            if item is None:
                item = await self._wait_async(deadline)
            conn = await self._ready_async(item, deadline)
            if conn is not None:
                return self._handed(conn, now)
            item = self._take(None)

    def take_idle(self) -> C | None:
        """For a task: an idle connection fit to hand out at once (usable, not
        expired, no ping due), taken with no wait and no coroutine; None when
        there is none, and then :meth:`aacquire` decides. One found dead here
        is dropped, as :meth:`aacquire` would.

        Example::

            conn = pool.take_idle() or await pool.aacquire()
        """
        if self._orphans or self._open_async is None:
            return None  # aacquire reaps them first, or refuses
        now = time.monotonic()
        with self._lock:
            idle = self._idle
            if self._closed or not idle:
                return None
            conn = idle[-1]  # most recently used, as _take
            if self._stale(conn, now) or self._idle_too_long(idle[0], now):
                return None  # expired, a ping due, or idle ones to close: aacquire
            idle.pop()
            self._in_use.add(conn)
        if conn.usable_idle():
            return self._handed(conn, now)
        self._drop(conn)
        return None

    def _fit(self, item: object, now: float) -> bool:
        """True when ``item`` is an idle connection fit to hand out as it is: usable,
        not expired, no ping due (else :meth:`_inspect` decides, the slow way)."""
        if item is None or item is _CREATE:
            return False
        conn: C = item  # type: ignore[assignment]
        return not self._stale(conn, now) and conn.usable_idle()

    def _stale(self, conn: C, now: float) -> bool:
        """True when idle ``conn`` is expired or due a ping (no I/O: the clock only)."""
        cfg = self.config
        life, after = cfg.max_lifetime, cfg.check_idle_after
        return (life is not None and now - conn.created_at >= life) or (
            after is not None and now - conn.released_at >= after
        )

    def _handed(self, conn: C, start: float) -> C:
        """``conn``, acquired since ``start``, told to ``on_acquire`` when set."""
        if self.on_acquire is not None:
            self.on_acquire(self, time.monotonic() - start)
        return conn

    def _start_acquire(self, opener: object, only: str) -> float:
        """Refuse the side this pool does not serve (no ``opener``: it serves
        ``only``), close orphans, and return the acquire's start (``time.monotonic``)."""
        if opener is None:
            raise TypeError(f"pool {self.name!r} serves {only} only")
        if self._orphans:
            self._reap_orphans()
        return time.monotonic()

    def replace(self, conn: C) -> C:
        """Close ``conn`` (checked out, found dead) and open a new connection in its slot.

        For the one retry of a statement that failed before it was sent
        (:mod:`fastpeewee.drivers.retry`): a connection opened now, not an idle one that
        may have died the same way. Opening it is bounded by ``acquire_timeout``.
        """
        deadline = self._start_acquire(self._open_sync, "asyncio tasks")
        deadline += self.config.acquire_timeout
        if not self._vacate(conn):
            return self.acquire()
        return self._open_conn_sync(deadline)

    async def areplace(self, conn: C) -> C:
        """:meth:`replace` for asyncio tasks."""
        deadline = self._start_acquire(self._open_async, "threads")
        deadline += self.config.acquire_timeout
        if not self._vacate(conn):
            return await self.aacquire()
        return await self._open_conn_async(deadline)

    def _vacate(self, conn: C) -> bool:
        """Close checked-out ``conn``, keeping its slot; False when there is no slot to keep
        (the pool closed, or ``conn`` already given back)."""
        with self._lock:
            keep = not self._closed and conn in self._in_use
            if keep:
                self._in_use.discard(conn)
        if not keep:
            self.discard(conn)
            return False
        conn.broken = True
        self._close(conn)
        return True

    def release(self, conn: C) -> None:
        """Give a connection back; broken, expired or dirty ones are closed instead."""
        now = time.monotonic()
        life = self.config.max_lifetime
        with self._lock:
            in_use = self._in_use
            if conn not in in_use:
                return  # already released or discarded: releasing twice is harmless
            in_use.remove(conn)
            keep = (
                not self._closed
                and not conn.broken
                and not conn.dirty
                and not conn.unsettled
                and (life is None or now - conn.created_at < life)  # not expired
            )
            if keep:
                conn.released_at = now
                if not self._waiters or not self._hand_over(conn):
                    self._idle.append(conn)
                return
            self._free_slot()
        self._close(conn)
        if self._closed:
            self._finish_if_drained()

    def orphan(self, conn: C) -> None:
        """Take back a connection whose owner is gone (a thread that ended holding it).

        Safe from a finalizer: it takes no lock. The connection is closed, never
        reused (its session may hold anything), at the pool's next acquire or
        :meth:`stats`.
        """
        conn.broken = True
        self._orphans.append(conn)

    def _reap_orphans(self) -> None:
        orphans = self._orphans
        while orphans:
            try:
                conn = orphans.popleft()
            except IndexError:  # another thread took the last one
                return
            self.release(conn)

    def discard(self, conn: C) -> None:
        """Close a checked-out connection and free its slot."""
        conn.broken = True
        self.release(conn)

    def close(self) -> list[C]:
        """Close idle connections, fail the waiters, refuse new acquires.

        Returns the connections still checked out; they are closed when released.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            self._size -= len(idle)
            waiters, self._waiters = list(self._waiters), deque()
            in_use = list(self._in_use)
        for waiter in waiters:
            waiter.deliver(PoolClosed(f"pool {self.name!r} was closed"), self)
        for conn in idle:
            self._close(conn)
        self._finish_if_drained()
        return in_use

    def _finish_if_drained(self) -> None:
        """Run ``on_close`` once the pool is closed and every connection is back."""
        with self._lock:
            if not self._closed or self._in_use or self._on_close is None:
                return
            on_close, self._on_close = self._on_close, None
        on_close()

    def terminate(self) -> None:
        """Close every connection, including checked-out ones."""
        for conn in self.close():
            self.discard(conn)

    # -- acquiring ----------------------------------------------------------

    def _take(self, waiter: _SyncWaiter | _AsyncWaiter | None, now: float | None = None) -> object:
        """Return an idle connection, the create token, or None after queueing ``waiter``."""
        stale: list[C] | None = None
        try:
            with self._lock:
                if self._closed:
                    raise PoolClosed(f"pool {self.name!r} is closed")
                idle = self._idle
                if idle and self._idle_too_long(idle[0], now):
                    stale = self._evict_idle()
                if idle:
                    conn = idle.pop()  # most recently used: warm, least likely stale
                    self._in_use.add(conn)
                    return conn
                if self._size < self.config.pool_size:
                    self._size += 1
                    return _CREATE
                if waiter is not None:
                    self._enqueue(waiter)
                return None
        finally:
            if stale:
                for old in stale:
                    self._close(old)

    def _idle_too_long(self, conn: C, now: float | None) -> bool:
        """True when idle ``conn`` is past ``max_idle``, beyond ``pool_min_size`` (lock held)."""
        max_idle = self.config.max_idle
        if max_idle is None or self._size <= self.config.pool_min_size:
            return False
        return (time.monotonic() if now is None else now) - conn.released_at >= max_idle

    def _evict_idle(self) -> list[C]:
        """Take the connections idle past ``max_idle`` (beyond ``pool_min_size``) out of
        the idle queue, oldest first, and return them to close (lock held)."""
        stale: list[C] = []
        idle = self._idle
        now = time.monotonic()
        while idle and self._idle_too_long(idle[0], now):
            stale.append(idle.popleft())
            self._size -= 1
        return stale

    def _enqueue(self, waiter: _SyncWaiter | _AsyncWaiter) -> None:
        limit = self.config.max_waiting
        if limit and len(self._waiters) >= limit:
            raise TooManyWaiters(
                f"pool {self.name!r} already has {limit} callers waiting "
                f"(pool_size={self.config.pool_size}, max_waiting={limit}); "
                "shed load or raise max_waiting"
            )
        self._waiters.append(waiter)

    def _wait_sync(self, deadline: float) -> object:
        waiter = _SyncWaiter()
        item = self._take(waiter)
        if item is not None:
            return item
        if not waiter.event.wait(max(0.0, deadline - time.monotonic())):
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self._timeouts += 1
                    raise self._timeout_error()
        return self._unwrap(waiter.item)

    async def _wait_async(self, deadline: float) -> object:
        waiter = _AsyncWaiter(asyncio.get_running_loop())
        item = self._take(waiter)
        if item is not None:
            return item
        try:
            async with asyncio.timeout_at(_to_loop_time(deadline)):
                item = await waiter.fut
        except BaseException as exc:
            self._abandon(waiter)
            if isinstance(exc, TimeoutError):
                with self._lock:
                    self._timeouts += 1
                raise self._timeout_error() from None
            raise
        return self._unwrap(item)

    def _abandon(self, waiter: _AsyncWaiter) -> None:
        """A waiter left (timeout, cancellation): dequeue it or pass on what it got."""
        with self._lock:
            queued = waiter in self._waiters
            if queued:
                self._waiters.remove(waiter)
        fut = waiter.fut
        if not queued and fut.done() and not fut.cancelled():
            self._give_back(fut.result())

    def _unwrap(self, item: object) -> object:
        if isinstance(item, BaseException):
            raise item
        return item

    def _ready_sync(self, item: object, deadline: float) -> C | None:
        """Turn a hand-over item into a checked connection, or None to try again."""
        if item is _CREATE:
            return self._open_conn_sync(deadline)
        conn, budget = self._inspect(item, deadline)
        if conn is None or budget is None:
            return conn
        try:
            conn.ping(budget)
        except Exception as exc:
            return self._drop_unanswered(conn, exc, budget)
        return conn

    async def _ready_async(self, item: object, deadline: float) -> C | None:
        if item is _CREATE:
            return await self._open_conn_async(deadline)
        conn, budget = self._inspect(item, deadline)
        if conn is None or budget is None:
            return conn
        try:
            async with asyncio.timeout(budget):
                await conn.aping()
        except asyncio.CancelledError:
            self.discard(conn)
            raise
        except Exception as exc:
            return self._drop_unanswered(conn, exc, budget)
        return conn

    def _open_conn_sync(self, deadline: float) -> C:
        assert self._open_sync is not None
        ticket = 0
        try:
            timeout = self._remaining(deadline)
            ticket = self.backoff.admit()
            conn = self._open_sync(timeout)
        except BaseException as exc:
            self._open_failed(exc, ticket)
            raise
        self.backoff.succeeded()
        return self._register(conn)

    async def _open_conn_async(self, deadline: float) -> C:
        assert self._open_async is not None
        ticket = 0
        try:
            timeout = self._remaining(deadline)
            ticket = self.backoff.admit()
            asked = cancel_requests()
            conn = await self._open_async(timeout)
            if cancel_requests() > asked:  # the driver's connect swallowed a cancel
                self._close(conn)
                raise asyncio.CancelledError
        except BaseException as exc:
            self._open_failed(exc, ticket)
            raise
        self.backoff.succeeded()
        return self._register(conn)

    def _open_failed(self, exc: BaseException, ticket: int) -> None:
        """Free the slot of a connect that failed (or never ran); tell the back-off."""
        with self._lock:
            self._free_slot()
        if not isinstance(exc, PoolError):  # our own refusal or timeout: no connect ran
            self.backoff.failed(exc, ticket)

    def _register(self, conn: C) -> C:
        now = time.monotonic()
        conn.created_at = conn.released_at = now
        conn.pool = self
        with self._lock:
            self._opened += 1
            if not self._closed:
                self._in_use.add(conn)
                return conn
            self._free_slot()
        self._close(conn)
        raise PoolClosed(f"pool {self.name!r} was closed while opening a connection")

    def _remaining(self, deadline: float) -> float:
        """Seconds left to open a connection; the caller frees the slot if this raises."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with self._lock:
                self._timeouts += 1
            raise self._timeout_error()
        return remaining

    def _inspect(self, item: object, deadline: float) -> tuple[C | None, float | None]:
        """Look at an idle connection handed over: ``(None, None)`` when it was
        dropped (try again), ``(conn, None)`` when fit to hand out, ``(conn,
        budget)`` when it must first answer a ping within ``budget`` seconds."""
        conn: C = item  # type: ignore[assignment]
        if not conn.usable_idle() or self._expired(conn):
            return self._drop(conn), None
        after = self.config.check_idle_after
        if after is None or time.monotonic() - conn.released_at < after:
            return conn, None
        return conn, self._ping_budget(conn, deadline)

    def _drop(self, conn: C, why: str = "is closed or expired") -> C | None:
        """Discard a connection that may not be handed out; None means try again."""
        logger.info("pool %r: dropping a connection that %s", self.name, why)
        self.discard(conn)
        return None

    def _ping_budget(self, conn: C, deadline: float) -> float:
        """Seconds a ping may take: ``ping_timeout``, at most half of what is left of
        the acquire, the other half being for a fresh connection if it went silent.

        With nothing left, ``conn`` goes back unpinged and the acquire times out.
        """
        budget = min(self.config.ping_timeout, (deadline - time.monotonic()) / 2)
        if budget > 0:
            return budget
        self.release(conn)
        with self._lock:
            self._timeouts += 1
        raise self._timeout_error()

    def _drop_unanswered(self, conn: C, exc: Exception, budget: float) -> C | None:
        """Drop a connection that failed its ping; after a timeout, those idle longer too.

        A link that went silent (a NAT or load balancer forgot it: no FIN, no
        RST) shows only as a ping that times out. NATs forget the oldest links
        first, so the connections idle longer than this one have most likely
        gone the same way: pinging each in turn would cost a ``ping_timeout``
        apiece, so the caller opens a fresh connection instead.
        """
        if not isinstance(exc, TimeoutError):
            return self._drop(conn, f"failed its ping ({type(exc).__name__})")
        self._evict_quiet(conn.released_at)
        return self._drop(conn, f"did not answer its ping within {budget:.2f} s")

    def _evict_quiet(self, since: float) -> None:
        """Close the idle connections released at ``since`` or earlier."""
        with self._lock:
            quiet = [conn for conn in self._idle if conn.released_at <= since]
            for conn in quiet:
                self._idle.remove(conn)
                self._free_slot()
        if quiet:
            logger.info(
                "pool %r: dropping %d connection(s) idle longer than one that went silent",
                self.name,
                len(quiet),
            )
        for conn in quiet:
            self._close(conn)

    def _timeout_error(self) -> PoolTimeout:
        cfg = self.config
        return PoolTimeout(
            f"no connection from pool {self.name!r} after {cfg.acquire_timeout:.2f} s "
            f"(pool_size={cfg.pool_size}, in_use={len(self._in_use)}, "
            f"waiting={len(self._waiters)}); raise pool_size, or release connections "
            "sooner (a task keeps its connection while in a transaction or after aconnect())"
        )

    # -- returning ----------------------------------------------------------

    def _expired(self, conn: C) -> bool:
        life = self.config.max_lifetime
        return life is not None and time.monotonic() - conn.created_at >= life

    def _hand_over(self, item: object) -> bool:
        """Give ``item`` to the oldest live waiter (lock held)."""
        while self._waiters:
            if self._waiters.popleft().deliver(item, self):
                if item is not _CREATE:
                    self._in_use.add(item)  # type: ignore[arg-type]
                return True
        return False

    def _free_slot(self) -> None:
        """A slot became free (lock held): let a waiter open a connection in it."""
        if self._closed or not self._hand_over(_CREATE):
            self._size -= 1

    def _give_back(self, item: object) -> None:
        """Take back an item handed to a waiter that left."""
        if item is _CREATE:
            with self._lock:
                self._free_slot()
        elif not isinstance(item, BaseException):
            self.release(item)  # type: ignore[arg-type]

    def _close(self, conn: C) -> None:
        with self._lock:
            self._closed_count += 1
        try:
            conn.close()
        except Exception:
            logger.warning("pool %r: error closing a connection", self.name, exc_info=True)


def _to_loop_time(deadline: float) -> float:
    """Convert a ``time.monotonic`` deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
