"""MySQL and MariaDB: ``AsyncMySQLDatabase``, asyncmy for tasks and PyMySQL for threads."""

from __future__ import annotations

from typing import Any

import peewee

from ..contracts.peewee import set_mysql_server_version
from ..database import AsyncDatabase
from ..drivers.mysql import (
    KILL_TIMEOUT,
    AsyncmyConnection,
    PyMySQLConnection,
    connect_asyncmy,
    connect_pymysql,
    kill_thread,
)

__all__ = ["AsyncMySQLDatabase"]

# Connection keywords one driver knows and the other would reject.
_ASYNCMY_ONLY = frozenset({"echo", "query_callback", "stmt_cache_size", "password_creator"})
_PYMYSQL_ONLY = frozenset(
    {
        "bind_address",
        "compress",
        "cursorclass",
        "defer_connect",
        "named_pipe",
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
_ALIASES = frozenset({"passwd", "db"})


class AsyncMySQLDatabase(AsyncDatabase, peewee.MySQLDatabase):
    """A ``peewee.MySQLDatabase`` for async (asyncmy) and sync (PyMySQL) code.

    Works with MySQL 5.7+/8 and MariaDB 10.4+. Example::

        db = AsyncMySQLDatabase("app", host="127.0.0.1", user="app", password="...",
                                pool_size=20)
        user = await User.aget(User.id == 1)

    Driver keywords (``host``, ``port``, ``user``, ``password``, ``ssl``,
    ``init_command``, ``read_timeout``, ...) go to both drivers, those only
    one driver knows (asyncmy's ``stmt_cache_size``, PyMySQL's
    ``write_timeout``) to that one; text is ``utf8mb4`` unless ``charset=``
    says otherwise. ``mariadb=True`` picks MariaDB's JSON syntax before the
    first connection; left unset, it is detected on connecting.

    ``bulk_binary=True`` sends big multi-row inserts from tasks (500 rows or
    more, columns of ints and strings) to MariaDB as one binary bulk
    statement (COM_STMT_BULK_EXECUTE), about twice as fast as the text
    INSERTs; the rows stored are the same, but MariaDB then reserves
    auto-increment ids as for ``INSERT ... SELECT``, so the next id after the
    insert skips a few (and, past 1 MB, so do ids between its parts).
    """

    _loop_bound = True

    def init(
        self,
        database: str | None,
        mariadb: bool | None = None,
        bulk_binary: bool = False,
        **kwargs: Any,
    ) -> None:
        """Configure; ``mariadb=None`` detects MariaDB on the first connection."""
        self._detect_mariadb = mariadb is None
        self.bulk_binary = bulk_binary
        super().init(database, mariadb=mariadb, **kwargs)

    def get_binary_type(self) -> type[bytes]:
        """Blobs travel as plain ``bytes``, which both drivers accept."""
        return bytes

    def _plain_begin(self) -> bool:
        return type(self).begin is AsyncMySQLDatabase.begin

    def _executemany_supported(self) -> bool:
        """Multi-row inserts go through the driver's executemany (fast/bulk.py)."""
        return True

    def begin(self, isolation_level: str | None = None) -> None:
        """Start a transaction, at ``isolation_level`` if given.

        ``SET TRANSACTION ISOLATION LEVEL`` applies to the next transaction of
        the connection that runs it: it and ``BEGIN`` must share a connection,
        or the level would go to somebody else's transaction.
        """
        if not isolation_level:
            self.execute_sql("BEGIN")
            return
        scope = self._current_state()
        if not scope.closed:  # the scope keeps its connection anyway
            super().begin(isolation_level)
            return
        scope.held = True  # keep the connection the first statement borrows
        try:
            super().begin(isolation_level)
        except BaseException:
            scope.held = False
            scope.close()  # no transaction began: give the connection back
            raise
        scope.held = False  # the open transaction keeps it from here on

    def _note_server(self, version: str) -> None:
        """Learn the server's version and flavour from the first connection."""
        if self.server_version is None:
            set_mysql_server_version(self, version)
            if self._detect_mariadb:
                self.mariadb = "maria" in version.lower()

    # -- connection parameters ----------------------------------------------

    def _driver_params(self, skip: frozenset[str]) -> dict[str, Any]:
        given = self.connect_params
        params = {k: v for k, v in given.items() if k not in skip and k not in _ALIASES}
        # MySQLdb-era spellings: asyncmy takes neither, PyMySQL deprecates them.
        if "passwd" in given:
            params.setdefault("password", given["passwd"])
        database = self.database or given.get("db")
        if database:
            params["database"] = database
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

    # -- connections --------------------------------------------------------

    def _open_sync(self, timeout: float) -> PyMySQLConnection:
        conn = connect_pymysql(self._pymysql_params(timeout), timeout)
        self._note_server(conn.raw.get_server_info())
        return conn

    async def _open_async(self, timeout: float) -> AsyncmyConnection:
        conn = await connect_asyncmy(self._asyncmy_params(timeout), timeout, self._kill)
        conn.bulk_binary = self.bulk_binary
        self._note_server(conn.raw.get_server_info())
        return conn

    async def _kill(self, thread_id: int) -> None:
        """Kill server thread ``thread_id`` (statement and connection) from a side link."""
        bound = min(KILL_TIMEOUT, self.pool_config.acquire_timeout)
        await kill_thread(self._asyncmy_params(bound), bound, thread_id)
