"""PostgreSQL: ``AsyncPostgresqlDatabase``, asyncpg for tasks and psycopg 3 for threads.

Async statements use asyncpg's per-connection statement cache: a repeated
query is one round trip (bind + execute of a cached prepared statement), with
no explicit PREPARE per query. ``prepared_statements=False`` switches both
drivers to unnamed statements; ``pooler="transaction"`` (PgBouncer's
transaction mode) implies it and also refuses, before sending them, the
statements whose effects would outlive their transaction (see
:mod:`fastpeewee.drivers.pooler`).
"""

from __future__ import annotations

from typing import Any

import peewee

from ..contracts.peewee import isolation_level
from ..database import AsyncDatabase
from ..drivers.pooler import (
    PooledAsyncpgConnection,
    PooledPsycopgConnection,
    check_pooler,
    check_pooler_settings,
    let_cancels_finish,
)
from ..drivers.postgres import (
    AsyncpgConnection,
    PsycopgConnection,
    connect_asyncpg,
    connect_psycopg,
)
from ..fast.bulk import quote_name
from ..state import AsyncState

__all__ = ["AsyncPostgresqlDatabase"]

# Connection keywords understood by asyncpg only; the rest (libpq keywords such
# as sslmode or application_name) go to psycopg only; these go to both.
_SHARED_KEYS = frozenset({"host", "port", "user", "password"})
_ASYNCPG_KEYS = frozenset(
    {
        "passfile",
        "timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "command_timeout",
        "ssl",
        "direct_tls",
        "server_settings",
        "record_class",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
    }
)
# Settings of ours kept in connect_params (so ``type(db)(db.database,
# **db.connect_params)`` copies them) but never given to a driver.
_OWN_KEYS = frozenset({"prepared_statements", "pooler"})
# server_settings that libpq sends as startup parameters of their own, as asyncpg
# does: psycopg gets them as keywords, the rest in ``options`` (-c key=value).
_LIBPQ_SETTINGS = frozenset({"application_name", "client_encoding"})
# The sequence is looked up once (OFFSET 0 keeps the subquery from being
# flattened into one lookup per row), then drawn from once per row.
_RESERVE_IDS = (  # one row holding an array: thousands of ids without thousands of rows
    "SELECT array_agg(id ORDER BY id) FROM (SELECT nextval(q.seq) AS id FROM "
    "(SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
    "AND attname = %s AND attidentity = 'a') OFFSET 0) AS q, generate_series(1, %s)) AS s"
)


class AsyncPostgresqlDatabase(AsyncDatabase, peewee.PostgresqlDatabase):
    """A ``peewee.PostgresqlDatabase`` for async (asyncpg) and sync (psycopg) code.

    Example::

        db = AsyncPostgresqlDatabase("app", host="127.0.0.1", user="app", pool_size=20)
        user = await User.aget(User.id == 1)

    ``prepared_statements=False`` turns off server-side prepared statements.
    Behind PgBouncer in transaction mode pass ``pooler="transaction"``: it
    implies ``prepared_statements=False`` and refuses what would leak from one
    client to the next through a shared server session (a session ``SET``,
    ``LISTEN``, a session advisory lock, a temporary table outliving its
    transaction, ``PREPARE``, ``DECLARE ... WITH HOLD``) with
    :class:`~fastpeewee.PoolerRefused`. Both settings stay in
    ``connect_params``, so a copy made from it keeps them.
    """

    _loop_bound = True
    max_query_params = 32767  # asyncpg's cap (psycopg allows 65,535)

    def init(
        self,
        database: str | None,
        register_unicode: bool = True,
        encoding: Any = None,
        isolation_level: Any = None,
        *,
        prefer_psycopg3: bool = True,
        prepared_statements: bool = True,
        pooler: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.pooler = check_pooler(pooler)
        self.prepared_statements = bool(prepared_statements) and self.pooler is None
        super().init(
            database,
            register_unicode,
            encoding,
            isolation_level,
            prefer_psycopg3=prefer_psycopg3,
            **kwargs,
        )
        if not prepared_statements:
            self.connect_params["prepared_statements"] = False
        if self.pooler is not None:
            self.connect_params["pooler"] = self.pooler
        check_pooler_settings(self.pooler, self.connect_params)

    def _plain_begin(self) -> bool:
        plain = type(self).begin is peewee.PostgresqlDatabase.begin
        return not isolation_level(self) and plain

    def _copy_supported(self) -> bool:
        return isinstance(self._current_state(), AsyncState)  # asyncpg: tasks only

    def _reserve_ids(
        self, table: str, schema: str | None, column: str, count: int
    ) -> list[Any] | None:
        """Draw ``count`` values from the serial column's sequence, as INSERT would.

        None when the column has no sequence or is GENERATED ALWAYS (COPY could
        not write it).
        """
        name = quote_name(self, schema, table)
        cursor = self.execute_sql(_RESERVE_IDS, (name, column, name, column, count))
        row = cursor.fetchone()
        ids: list[Any] | None = row[0] if row is not None else None
        if ids is None or len(ids) != count or None in ids:
            return None
        return ids

    def get_binary_type(self) -> type[bytes]:
        """Blobs travel as plain ``bytes``, which both drivers accept."""
        return bytes

    # -- connection parameters ----------------------------------------------

    def _target(self) -> dict[str, Any]:
        name = self.database or ""
        if name.startswith(("postgresql://", "postgres://")):
            return {"dsn": name}
        return {"database": name} if name else {}

    def _asyncpg_params(self, timeout: float) -> dict[str, Any]:
        wanted = _SHARED_KEYS | _ASYNCPG_KEYS
        params = {k: v for k, v in self.connect_params.items() if k in wanted}
        params.setdefault("timeout", timeout)
        if not self.prepared_statements:
            params["statement_cache_size"] = 0
        return {**self._target(), **params}

    def _psycopg_params(self, timeout: float) -> dict[str, Any]:
        skip = _ASYNCPG_KEYS | _OWN_KEYS
        params = {k: v for k, v in self.connect_params.items() if k not in skip}
        params.setdefault("connect_timeout", max(1, round(timeout)))
        settings = dict(self.connect_params.get("server_settings") or {})
        for key in _LIBPQ_SETTINGS & settings.keys():  # startup parameters of their own
            params.setdefault(key, settings.pop(key))
        if settings:
            options = " ".join(f"-c {k}={v}" for k, v in settings.items())
            params["options"] = f"{params.get('options', '')} {options}".strip()
        if not self.prepared_statements:
            params["prepare_threshold"] = None
        target = self._target()
        if "dsn" in target:
            params["conninfo"] = target["dsn"]
        elif "database" in target:
            params["dbname"] = target["database"]
        return params

    # -- connections --------------------------------------------------------

    async def close_pool(self) -> None:
        await super().close_pool()
        if self.pooler is not None:
            # Cancel requests of connections closed while they were sent
            # (PooledAsyncpgConnection.close): cut short, they can make PgBouncer exit.
            await let_cancels_finish(self.pool_config.acquire_timeout)

    def _open_sync(self, timeout: float) -> PsycopgConnection:
        wrapper = PooledPsycopgConnection if self.pooler else PsycopgConnection
        conn = connect_psycopg(self._psycopg_params(timeout), wrapper)
        if self.server_version is None:
            self.server_version = conn.raw.pgconn.server_version
        return conn

    async def _open_async(self, timeout: float) -> AsyncpgConnection:
        wrapper = PooledAsyncpgConnection if self.pooler else AsyncpgConnection
        conn = await connect_asyncpg(self._asyncpg_params(timeout), wrapper)
        if self.server_version is None:
            version = conn.raw.get_server_version()
            self.server_version = version.major * 10000 + version.minor
        return conn
