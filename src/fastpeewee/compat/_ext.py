"""The PostgreSQL extension classes of peewee-async, on fastpeewee (see peewee_asyncext)."""

from __future__ import annotations

from typing import Any

import peewee
from playhouse.postgres_ext import PostgresqlExtDatabase as _PlayhouseExt

from ..contracts.peewee import postgres_adapter, registers_hstore
from ..drivers.postgres import AsyncpgConnection, PsycopgConnection
from ..errors import translate_errors
from ._databases import PooledPostgresqlDatabase

__all__ = ["PooledPostgresqlExtDatabase", "PostgresqlExtDatabase"]


class PooledPostgresqlExtDatabase(PooledPostgresqlDatabase, _PlayhouseExt):  # type: ignore[misc]
    """Pooled PostgreSQL with JSON, and HStore when ``register_hstore=True``.

    HStore is off by default, as in peewee's ``PostgresqlExtDatabase``; with
    it on, the database needs the extension (``CREATE EXTENSION hstore``), or
    opening a connection raises ``ImproperlyConfigured`` saying so. Example::

        database = PooledPostgresqlExtDatabase("test", register_hstore=True,
                                               max_connections=20)
    """

    def __init__(self, database: Any = None, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("register_hstore", False)  # peewee's default
        if kwargs.get("server_side_cursors"):
            raise ValueError(
                "server_side_cursors is not supported; stream rows with "
                "`async for row in db.iterate(query)` instead"
            )
        kwargs.pop("server_side_cursors", None)
        super().__init__(database, *args, **kwargs)

    def execute_sql(self, sql: str, params: Any = None, named_cursor: Any = None) -> Any:
        """Run one statement from sync code (``named_cursor`` is not supported)."""
        if named_cursor:
            raise ValueError("named (server-side) cursors are not supported; use db.iterate()")
        return super().execute_sql(sql, params)

    def _open_sync(self, timeout: float) -> PsycopgConnection:
        conn = super()._open_sync(timeout)
        if registers_hstore(self):
            try:
                with translate_errors():
                    postgres_adapter(self).register_hstore(conn.raw)
            except TypeError as exc:  # psycopg: "no info passed. Is the 'hstore' extension..."
                conn.close()
                raise self._no_hstore() from exc
            except BaseException:
                conn.close()
                raise
        return conn

    async def _open_async(self, timeout: float) -> AsyncpgConnection:
        conn = await super()._open_async(timeout)
        if registers_hstore(self):
            try:
                with translate_errors():
                    await conn.raw.set_builtin_type_codec("hstore", codec_name="pg_contrib.hstore")
            except ValueError as exc:  # asyncpg: "unknown type: public.hstore"
                conn.close()
                raise self._no_hstore() from exc
            except BaseException:
                conn.close()
                raise
        return conn

    def _no_hstore(self) -> peewee.ImproperlyConfigured:
        return peewee.ImproperlyConfigured(
            f"register_hstore=True, but database {self.database!r} has no hstore extension: "
            "run `CREATE EXTENSION hstore` in it (as a user allowed to), or pass "
            "register_hstore=False (the default) if no HStoreField is used"
        )


class PostgresqlExtDatabase(PooledPostgresqlExtDatabase):
    """peewee-async's "single connection" extension class, pooled here too.

    Example::

        database = PostgresqlExtDatabase("test", register_hstore=True)
    """
