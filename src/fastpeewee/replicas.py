"""Read replicas: where a statement runs when a database has ``replicas=[...]``.

The one routing decision (:meth:`Replicas.target`) is taken on the execution
paths of :class:`~fastpeewee.database.AsyncDatabase` (``_run``, ``_arun``,
``_astream``) before the primary's connection state is touched. A statement
goes to a replica when all of these hold:

- it is a plain read (:func:`is_read`: a ``SELECT`` or a ``WITH`` that writes
  nothing, with no locking clause and no function known to write or to depend
  on the session), and no COPY or executemany;
- the caller is in no transaction and holds no connection of its own
  (``connect()``, ``async with db``, ``connection_context()``): those keep
  their session on the primary;
- the ``db.scope()`` block it runs in (a request under ``DatabaseMiddleware``)
  has written nothing yet: after its first write, every read of that block
  goes to the primary (read-your-writes within a request);
- some replica is *healthy*: up at its last check and, with
  ``max_replica_lag`` set, no further behind than that. Health is checked in
  the background every ``replica_check_interval`` seconds, never per query.

``with db.primary():`` forces the primary, ``with db.replica():`` a replica
(inside a transaction too); both also work with ``async with``, and reach the
worker threads started inside (``asyncio.to_thread`` copies the context). A
read that fails on a replica because the replica is unreachable marks it down
until its next check and runs once more on the primary (a read never reached
the replica's data in a way that matters); one that tried to write
(``read-only transaction``) runs on the primary too.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import re
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import peewee

from .drivers.session import changes_session
from .errors import is_unavailable
from .state import ConnectionState, SharedState

if TYPE_CHECKING:
    from .cursor import Cursor, StreamCursor
    from .database import AsyncDatabase
    from .drivers.base import Params

__all__ = ["ReplicaStatus", "Replicas", "RoutingPin", "is_read"]

logger = logging.getLogger("fastpeewee.replicas")

# Words that make a SELECT or WITH one for the primary: it writes (a data-
# modifying CTE, SELECT INTO), locks rows, or reads/changes what only the
# primary knows (sequences, advisory and GET_LOCK locks, LAST_INSERT_ID).
_PRIMARY_ONLY = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|INTO|FOR\s+(NO\s+KEY\s+)?UPDATE|FOR\s+(KEY\s+)?SHARE"
    r"|LOCK\s+IN\s+SHARE\s+MODE|NEXTVAL|SETVAL|CURRVAL|LASTVAL|SET_CONFIG|TXID_CURRENT"
    r"|PG_CURRENT_XACT_ID|PG_ADVISORY\w*|PG_TRY_ADVISORY\w*|PG_NOTIFY|LO_\w+|NEXT\s+VALUE"
    r"|PREVIOUS\s+VALUE|LAST_INSERT_ID|GET_LOCK|RELEASE_LOCK|RELEASE_ALL_LOCKS|IS_FREE_LOCK"
    r"|IS_USED_LOCK|FOUND_ROWS|ROW_COUNT)\b",
    re.IGNORECASE,
)
_LEADING = re.compile(r"(\s+|--[^\n]*\n|/\*.*?\*/|\()*", re.DOTALL)
_PG_LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() IS NULL "
    "OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 1e9) "
    "END::float8"
)
# SQLSTATE 25006: a statement tried to write on a read-only server (a standby).
_READ_ONLY_SQLSTATE = "25006"
_READ_ONLY_MYSQL = frozenset({1290, 1792})  # --read-only, read-only transaction
# ER_SPECIFIC_ACCESS_DENIED_ERROR: the replica's user may not read the replica status
# (MariaDB wants SLAVE MONITOR, MySQL REPLICATION CLIENT), as an application's often may not.
_MYSQL_NO_PRIVILEGE = 1227
_MYSQL_PARSE_ERROR = 1064
# The replica status statement: MySQL 8.4 knows only the first (8.0.22+ and MariaDB
# 10.5.1+ both); servers older than those only the second.
_MYSQL_STATUS = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
# Its lag column: MySQL 8.0.22+ says Source, MariaDB and older MySQL Master.
_MYSQL_LAG_COLUMNS = ("Seconds_Behind_Master", "Seconds_Behind_Source")


@functools.lru_cache(maxsize=4096)
def is_read(sql: str) -> bool:
    """True when ``sql`` only reads and may run on a replica.

    A ``SELECT`` (or a ``WITH`` query) with no locking clause, no ``INTO``, no
    data-modifying CTE and no call of a function that writes or depends on the
    session (``nextval``, advisory locks, ``LAST_INSERT_ID()``, ...), and one
    that changes no session state. Other functions that write cannot be seen
    from the SQL: run such a ``SELECT`` inside ``with db.primary():``.
    """
    head = sql[_LEADING.match(sql).end() :][:6].upper()  # type: ignore[union-attr]
    if head not in ("SELECT", "WITH ") and not head.startswith("WITH"):
        return False
    return _PRIMARY_ONLY.search(sql) is None and not changes_session(sql)


@dataclass(frozen=True)
class ReplicaStatus:
    """What the last health check of one replica found (``db.replica_status()``).

    ``up``: it answered; ``lag``: seconds behind the primary (None when down, or
    when the check may not read it); ``healthy``: up and within
    ``max_replica_lag`` (an unknown lag is not); ``checked_at``:
    ``time.monotonic()`` of the check (0.0: never checked); ``error``: why it
    is down or its lag unknown; ``served``: reads it answered so far.
    """

    name: str
    up: bool
    lag: float | None
    healthy: bool
    checked_at: float
    error: str | None = None
    served: int = 0  # reads this replica answered


_PRIMARY = "primary"
_REPLICA = "replica"


class RoutingPin:
    """``db.primary()`` / ``db.replica()``: force where the reads inside go.

    A context manager for ``with`` and ``async with``; the choice follows the
    context, so tasks created and threads started inside (``asyncio.to_thread``)
    inherit it. ``fallback=False`` on ``db.replica()`` makes a read raise
    :class:`peewee.OperationalError` when no replica is healthy instead of
    running on the primary.
    """

    __slots__ = ("_token", "_var", "kind")

    def __init__(
        self, var: contextvars.ContextVar[tuple[str, bool] | None], kind: tuple[str, bool]
    ):
        self._var = var
        self.kind = kind
        self._token: contextvars.Token[tuple[str, bool] | None] | None = None

    def __enter__(self) -> RoutingPin:
        self._token = self._var.set(self.kind)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            self._var.reset(self._token)
            self._token = None

    async def __aenter__(self) -> RoutingPin:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class _Health:
    __slots__ = ("checked_at", "error", "lag", "served", "status_sql", "up")

    def __init__(self) -> None:
        self.served = 0
        self.up = True  # optimistic until the first check says otherwise
        self.lag: float | None = None
        self.checked_at = 0.0
        self.error: str | None = None
        # MySQL: the replica status statement this server knows (see _MYSQL_STATUS).
        self.status_sql = _MYSQL_STATUS[0]


class Replicas:
    """The replicas of one primary database, their health, and the routing rule."""

    def __init__(
        self,
        primary: AsyncDatabase,
        replicas: Sequence[AsyncDatabase | str],
        max_replica_lag: float | None,
        check_interval: float,
    ) -> None:
        if not isinstance(primary, (peewee.PostgresqlDatabase, peewee.MySQLDatabase)):
            raise ValueError(
                f"{type(primary).__name__} has no read replicas; "
                "replicas= is for AsyncPostgresqlDatabase and AsyncMySQLDatabase"
            )
        if check_interval <= 0:
            raise ValueError("replica_check_interval must be positive (seconds)")
        self.primary = primary
        self.databases: list[AsyncDatabase] = [self._open(r) for r in replicas]
        self.max_lag = max_replica_lag
        self.interval = check_interval
        self.pin: contextvars.ContextVar[tuple[str, bool] | None] = contextvars.ContextVar(
            f"fastpeewee-pin-{id(primary):x}", default=None
        )
        self._health = {id(r): _Health() for r in self.databases}
        self._next = itertools.count()
        self._checking = False
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.primary_reads = 0  # reads that ran on the primary (pinned, or no replica fit)

    def _open(self, replica: AsyncDatabase | str) -> AsyncDatabase:
        if not isinstance(replica, str):
            if not isinstance(replica, type(self.primary)):
                raise ValueError(
                    f"replica {replica!r} is not a {type(self.primary).__name__}: "
                    "pass databases of the primary's class, or URLs"
                )
            return replica
        from .db_url import connect  # a URL opens like db_url.connect, with the primary's pool

        config = self.primary.pool_config
        options = {name: getattr(config, name) for name in config.__dataclass_fields__}
        return connect(replica, **options)

    # -- the routing decision --------------------------------------------------------

    def target(self, sql: str) -> AsyncDatabase | None:
        """The replica to run ``sql`` on, or None for the primary."""
        pin = self.pin.get()
        if pin is not None and pin[0] == _PRIMARY:
            self.primary_reads += 1
            return None
        if not is_read(sql):
            scope = self.primary._cv.get(None)
            if type(scope) is SharedState:
                scope.wrote = True  # read-your-writes: this block reads the primary now
            return None
        if pin is None:
            scope = self.primary._cv.get(None)
            shared = scope if type(scope) is SharedState else None
            if shared is not None and shared.wrote:
                self.primary_reads += 1
                return None
            if _on_primary(self.primary._current_state(), shared):
                self.primary_reads += 1
                return None
        chosen = self.choose()
        if chosen is None and pin is not None and not pin[1]:
            raise peewee.OperationalError(
                f"no healthy replica of {self.primary._pool_name()} "
                f"({self.describe()}); retry later, or use db.replica(fallback=True)"
            )
        if chosen is None:
            self.primary_reads += 1
        return chosen

    def choose(self) -> AsyncDatabase | None:
        """A healthy replica, round robin; None when none is. Starts a health
        check in the background when the last one is older than the interval."""
        if time.monotonic() >= self._next_check:
            self._start_check()
        healthy = [r for r in self.databases if self._healthy(self._health[id(r)])]
        if not healthy:
            return None
        return healthy[next(self._next) % len(healthy)]

    def _healthy(self, health: _Health) -> bool:
        if not health.up:
            return False
        if self.max_lag is None:
            return True
        if health.lag is None:  # optimistic until the first check; unknown after it
            return health.checked_at == 0.0
        return health.lag <= self.max_lag

    def failed(self, replica: AsyncDatabase, exc: BaseException) -> bool:
        """After ``exc`` from a read on ``replica``: True when the read should run
        on the primary instead (marking the replica down when it is unreachable)."""
        if _read_only_violation(exc):
            return True  # the statement wanted to write: nothing happened on the replica
        if not is_unavailable(exc):
            return False
        health = self._health[id(replica)]
        if type(exc).__name__ not in ("PoolTimeout", "TooManyWaiters"):
            health.up, health.lag = False, None
            health.error = f"{type(exc).__name__}: {exc}"
            logger.warning("replica %s is down (%s); reads go elsewhere", _name(replica), exc)
        return True

    # -- running on a replica ------------------------------------------------------

    def run(self, replica: AsyncDatabase, sql: str, params: Params) -> Cursor | None:
        """Run a read on ``replica`` from sync code; None: run it on the primary."""
        try:
            cursor = replica._run(sql, params, False, None, True)
        except peewee.DatabaseError as exc:
            if self.failed(replica, exc):
                self.primary_reads += 1
                return None
            raise
        self._health[id(replica)].served += 1
        return cursor

    async def arun(self, replica: AsyncDatabase, sql: str, params: Params) -> Cursor | None:
        """Run a read on ``replica`` from async code; None: run it on the primary."""
        try:
            cursor = await replica._arun(sql, params, False, True)
        except peewee.DatabaseError as exc:
            if self.failed(replica, exc):
                self.primary_reads += 1
                return None
            raise
        self._health[id(replica)].served += 1
        return cursor

    async def astream(
        self, replica: AsyncDatabase, sql: str, params: Params, batch_size: int
    ) -> tuple[StreamCursor, Coroutine[Any, Any, None]] | None:
        """Open a server-side cursor on ``replica``; None: open it on the primary."""
        try:
            opened = await replica._astream(sql, params, batch_size)
        except peewee.DatabaseError as exc:
            if self.failed(replica, exc):
                self.primary_reads += 1
                return None
            raise
        self._health[id(replica)].served += 1
        return opened

    # -- health ----------------------------------------------------------------

    def status(self) -> list[ReplicaStatus]:
        """The last health check of every replica, in the order given."""
        found = []
        for replica in self.databases:
            health = self._health[id(replica)]
            found.append(
                ReplicaStatus(
                    _name(replica),
                    health.up,
                    health.lag,
                    self._healthy(health),
                    health.checked_at,
                    health.error,
                    health.served,
                )
            )
        return found

    def describe(self) -> str:
        return ", ".join(
            f"{s.name}: {'up' if s.up else 'down'}"
            + (f", lag {s.lag:.1f} s" if s.lag is not None else "")
            for s in self.status()
        )

    def _start_check(self) -> None:
        with self._lock:
            if self._checking or time.monotonic() < self._next_check:
                return
            self._checking = True
        loop = asyncio._get_running_loop()
        if loop is not None:
            # A fresh context: the check is nobody's request, pin or transaction.
            task = loop.create_task(self.acheck(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            thread = threading.Thread(target=self.check, name="fastpeewee-replica-check")
            thread.daemon = True
            thread.start()

    def forget_checks(self) -> None:
        """In a forked child: no check is running here, whatever the parent was doing."""
        self._lock = threading.Lock()
        self._checking = False
        self._next_check = 0.0
        self._tasks = set()

    def _done_checking(self) -> None:
        with self._lock:
            self._checking = False
            self._next_check = time.monotonic() + self.interval

    async def acheck(self) -> None:
        """Check every replica now, from async code (the background check's body)."""
        try:
            for replica in self.databases:
                while True:
                    sql = self._lag_sql(replica)
                    try:
                        cursor = await replica._arun(sql, (), False, True)
                    except Exception as exc:
                        if self._older_server(replica, sql, exc):
                            continue
                        self._record(replica, None, exc)
                    else:
                        self._record(replica, cursor, None)
                    break
        finally:
            self._done_checking()

    def check(self) -> None:
        """Check every replica now, from sync code."""
        try:
            for replica in self.databases:
                while True:
                    sql = self._lag_sql(replica)
                    try:
                        cursor = replica._run(sql, (), False, None, True)
                    except Exception as exc:
                        if self._older_server(replica, sql, exc):
                            continue
                        self._record(replica, None, exc)
                    else:
                        self._record(replica, cursor, None)
                    break
        finally:
            self._done_checking()

    def _lag_sql(self, replica: AsyncDatabase) -> str:
        if isinstance(replica, peewee.PostgresqlDatabase):
            return _PG_LAG_SQL
        return self._health[id(replica)].status_sql

    def _older_server(self, replica: AsyncDatabase, sql: str, exc: BaseException) -> bool:
        """True (and the older statement chosen for next time) when a MySQL server
        refused ``SHOW REPLICA STATUS`` as a syntax error: MySQL before 8.0.22,
        MariaDB before 10.5.1, which know only ``SHOW SLAVE STATUS``."""
        health = self._health[id(replica)]
        if sql != _MYSQL_STATUS[0] or _mysql_errno(exc) != _MYSQL_PARSE_ERROR:
            return False
        health.status_sql = _MYSQL_STATUS[1]
        return True

    def _record(
        self, replica: AsyncDatabase, cursor: Cursor | None, exc: BaseException | None
    ) -> None:
        health = self._health[id(replica)]
        health.checked_at = time.monotonic()
        if exc is not None and _mysql_errno(exc) == _MYSQL_NO_PRIVILEGE:
            # It answered, so it is up; only its lag is unknown, which a lag bound minds.
            error = (
                f"lag unknown: {exc}; grant SLAVE MONITOR (MariaDB) or REPLICATION CLIENT "
                "(MySQL) to the replica's user to measure it"
            )
            if health.error != error:
                logger.warning("replica %s: %s", _name(replica), error)
            health.up, health.lag, health.error = True, None, error
            return
        if exc is not None or cursor is None:
            health.up, health.lag, health.error = False, None, f"{type(exc).__name__}: {exc}"
            return
        health.up, health.error = True, None
        if isinstance(replica, peewee.PostgresqlDatabase):
            row = cursor.fetchone()
            health.lag = float(row[0]) if row is not None and row[0] is not None else None
        else:
            health.lag = _mysql_lag(cursor)

    async def aclose(self) -> None:
        """Stop background checks and close every replica's pools."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for replica in self.databases:
            await replica.close_pool()

    def close(self) -> None:
        """Sync twin of :meth:`aclose` (running checks end by themselves)."""
        for replica in self.databases:
            replica.close_all()


def _on_primary(state: ConnectionState, scope: SharedState | None) -> bool:
    """True when the caller's state pins it to the primary: a transaction, or a
    connection it holds itself (a ``db.scope()`` block's hold does not count)."""
    if state.transactions or state.lost or state.ctx:
        return True
    conn = state.conn
    if conn is not None and conn.in_transaction():
        return True
    return state.held and state is not scope


def _mysql_lag(cursor: Cursor) -> float | None:
    """Seconds behind its primary, from ``SHOW REPLICA STATUS`` (or ``SLAVE``); 0 when
    the server is no replica, 1e9 when replication is stopped."""
    row = cursor.fetchone()
    if row is None:
        return 0.0
    names = [column[0] for column in cursor.description or ()]
    column = next(name for name in _MYSQL_LAG_COLUMNS if name in names)
    value = row[names.index(column)]
    return 1e9 if value is None else float(value)  # None: replication stopped


def _read_only_violation(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc.__cause__
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == _READ_ONLY_SQLSTATE:
        return True
    return _mysql_errno(exc) in _READ_ONLY_MYSQL


def _mysql_errno(exc: BaseException) -> int | None:
    """The MySQL error number behind ``exc`` (PyMySQL or asyncmy), or None."""
    orig = getattr(exc, "orig", None) or exc.__cause__
    if orig is None or "MySQLError" not in {k.__name__ for k in type(orig).__mro__}:
        return None
    args: tuple[Any, ...] = orig.args
    return args[0] if args and isinstance(args[0], int) else None


def _name(db: AsyncDatabase) -> str:
    params = db.connect_params
    host = params.get("host")
    if host is not None:
        return f"{host}:{params.get('port', '')}/{db.database}"
    return db._pool_name()
