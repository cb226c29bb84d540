"""MySQL and MariaDB: asyncmy for tasks, PyMySQL for threads.

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
import logging
import select
from collections.abc import Sequence
from typing import Any

import peewee

from .._peewee import set_mysql_server_version
from ..cursor import Cursor, StreamCursor
from ..database import AsyncDatabase
from ..errors import translate_errors
from ..pool import Pool
from .base import Connection, Params, close_socket

__all__ = ["AsyncMySQLDatabase", "AsyncmyConnection", "PyMySQLConnection"]

logger = logging.getLogger("fastpeewee.mysql")

# Connection keywords one driver knows and the other would reject.
_ASYNCMY_ONLY = frozenset({"echo", "query_callback", "stmt_cache_size", "password_creator"})
_PYMYSQL_ONLY = frozenset(
    {
        "bind_address",
        "compress",
        "cursorclass",
        "defer_connect",
        "named_pipe",
        "passwd",
        "ssl_ca",
        "ssl_cert",
        "ssl_disabled",
        "ssl_key",
        "ssl_key_password",
        "ssl_verify_cert",
        "ssl_verify_identity",
        "write_timeout",
    }
)
# The server status bit "a transaction is open" (SERVER_STATUS_IN_TRANS).
_IN_TRANS = 1
# Client and server error codes that mean the link is gone: CR_SERVER_GONE_ERROR,
# CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED
# (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8).
_LINK_GONE = frozenset({2006, 2013, 2055, 1053, 1927, 4031})
# Bound on the side connection that kills a cancelled statement.
KILL_TIMEOUT = 5.0


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise peewee.ImproperlyConfigured(
            f"{name} is not installed: pip install 'fastpeewee[mysql]'"
        ) from None


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error (or of the one a peewee error wraps)."""
    cause = exc.__cause__ if isinstance(exc, peewee.PeeweeException) else exc
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _link_gone(exc: BaseException) -> bool:
    """True for a driver error saying the server connection is lost or killed."""
    return error_code(exc) in _LINK_GONE


def _readable(fd: int) -> bool:
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class AsyncmyConnection(Connection):
    """An asyncmy connection (tasks only)."""

    __slots__ = ("_killer",)
    implicit_commits = True

    def __init__(self, raw: Any, killer: Any) -> None:
        super().__init__(raw)
        self._killer = killer  # async fn(thread_id): KILL it from a side connection

    def usable(self) -> bool:
        raw = self.raw
        # asyncmy notes the server's EOF or a transport error at once, without
        # I/O; its flag for that has no public name.
        return bool(raw.connected) and not getattr(raw, "_stream_broken", False)

    def in_transaction(self) -> bool:
        return bool(self.raw.server_status & _IN_TRANS) and self.usable()

    def close(self) -> None:
        try:
            self.raw.close()
        except RuntimeError:  # its event loop is closed: close the socket by hand
            close_socket(self.raw)

    def after_error(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError) or _link_gone(exc) or not self.usable():
            self.broken = True

    async def aexecute(self, sql: str, params: Params) -> Cursor:
        cur = self.raw.cursor()
        try:
            await cur.execute(sql, params or None)
            description = cur.description
            rows = await cur.fetchall() if description else ()
            return Cursor(rows, cur.rowcount, cur.lastrowid, description)
        except asyncio.CancelledError:
            await self._abandon()
            raise
        finally:
            if self.raw.connected:
                await cur.close()

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
                continue  # the kill is bounded by KILL_TIMEOUT: let it finish
        if not kill.cancelled() and kill.exception() is not None:
            logger.warning("could not kill cancelled statement %d", thread_id,
                           exc_info=kill.exception())

    async def aping(self) -> None:
        await self.raw.ping(reconnect=False)

    async def arollback(self) -> None:
        await self.aexecute("ROLLBACK", ())

    async def astream(self, sql: str, params: Params, batch_size: int) -> StreamCursor:
        cur = self.raw.cursor(_import("asyncmy").cursors.SSCursor)
        try:
            await cur.execute(sql, params or None)
        except asyncio.CancelledError:
            await self._abandon()
            raise

        async def fetch(n: int) -> Sequence[Any]:
            try:
                rows: Sequence[Any] = await cur.fetchmany(n)
            except asyncio.CancelledError:
                await self._abandon()
                raise
            return rows

        async def cleanup() -> None:
            if self.usable():
                await cur.close()  # reads what the server still sends

        return StreamCursor(fetch, cleanup, cur.description, batch_size)


class PyMySQLConnection(Connection):
    """A PyMySQL connection in autocommit mode (threads only)."""

    __slots__ = ()
    implicit_commits = True

    def usable(self) -> bool:
        raw = self.raw
        if not raw.open:
            return False
        # An idle connection has nothing to read, unless the server closed it
        # (killed, or timed out): one poll syscall, no round trip.
        if not raw.server_status & _IN_TRANS:
            sock = getattr(raw, "_sock", None)
            return sock is not None and not _readable(sock.fileno())
        return True

    def in_transaction(self) -> bool:
        return bool(self.raw.server_status & _IN_TRANS) and bool(self.raw.open)

    def close(self) -> None:
        if self.raw.open:
            try:
                self.raw.close()
            except Exception:  # the server went first: drop the socket
                self.raw._force_close()

    def after_error(self, exc: BaseException) -> None:
        if _link_gone(exc) or not self.raw.open:
            self.broken = True

    def execute(self, sql: str, params: Params) -> Cursor:
        cur = self.raw.cursor()
        try:
            cur.execute(sql, params or None)
            description = cur.description
            rows = cur.fetchall() if description else ()
            return Cursor(rows, cur.rowcount, cur.lastrowid, description)
        finally:
            cur.close()

    def ping(self) -> None:
        self.raw.ping(reconnect=False)


class AsyncMySQLDatabase(AsyncDatabase, peewee.MySQLDatabase):
    """A ``peewee.MySQLDatabase`` for async (asyncmy) and sync (PyMySQL) code.

    Works with MySQL 5.7+/8 and MariaDB 10.4+. Example::

        db = AsyncMySQLDatabase("app", host="127.0.0.1", user="app", password="...",
                                pool_size=20)
        user = await User.aget(User.id == 1)

    Driver keywords (``host``, ``port``, ``user``, ``password``, ``ssl``,
    ``init_command``, ``read_timeout``, ...) go to both drivers; text is
    ``utf8mb4`` unless ``charset=`` says otherwise.
    """

    _loop_bound = True

    def get_binary_type(self) -> type[bytes]:
        """Blobs travel as plain ``bytes``, which both drivers accept."""
        return bytes

    # -- connection parameters ----------------------------------------------

    def _driver_params(self, skip: frozenset[str]) -> dict[str, Any]:
        params = {k: v for k, v in self.connect_params.items() if k not in skip}
        if self.database:
            params["database"] = self.database
        params["autocommit"] = True
        return params

    def _asyncmy_params(self, timeout: float) -> dict[str, Any]:
        params = self._driver_params(_PYMYSQL_ONLY)
        params.setdefault("connect_timeout", timeout)
        return params

    def _pymysql_params(self, timeout: float) -> dict[str, Any]:
        params = self._driver_params(_ASYNCMY_ONLY)
        params.setdefault("connect_timeout", max(1, round(timeout)))
        return params

    # -- pools --------------------------------------------------------------

    def _new_sync_pool(self) -> Pool[Any]:
        return Pool(self._pool_name() + "[sync]", self.pool_config, open_sync=self._open_sync)

    def _new_async_pool(self) -> Pool[Any]:
        return Pool(self._pool_name(), self.pool_config, open_async=self._open_async)

    def _open_sync(self, timeout: float) -> PyMySQLConnection:
        pymysql = _import("pymysql")
        with translate_errors():
            raw = pymysql.connect(**self._pymysql_params(timeout))
        if self.server_version is None:
            set_mysql_server_version(self, raw.get_server_info())
        return PyMySQLConnection(raw)

    async def _open_async(self, timeout: float) -> AsyncmyConnection:
        asyncmy = _import("asyncmy")
        with translate_errors():
            async with asyncio.timeout(timeout):
                raw = await asyncmy.connect(**self._asyncmy_params(timeout))
        if self.server_version is None:
            set_mysql_server_version(self, raw.get_server_info())
        return AsyncmyConnection(raw, self._kill)

    async def _kill(self, thread_id: int) -> None:
        """Kill server thread ``thread_id`` (statement and connection) from a side link."""
        asyncmy = _import("asyncmy")
        params = self._asyncmy_params(KILL_TIMEOUT)
        async with asyncio.timeout(KILL_TIMEOUT):
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
