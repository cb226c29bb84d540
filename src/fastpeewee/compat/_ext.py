"""The PostgreSQL extension classes of peewee-async, on fastpeewee (see peewee_asyncext)."""

from __future__ import annotations

from typing import Any

from playhouse.postgres_ext import PostgresqlExtDatabase as _PlayhouseExt

from ..contracts.peewee import postgres_adapter, registers_hstore
from ..drivers.postgres import AsyncpgConnection, PsycopgConnection
from ..errors import translate_errors
from ._databases import PooledPostgresqlDatabase

__all__ = ["PooledPostgresqlExtDatabase", "PostgresqlExtDatabase"]


class PooledPostgresqlExtDatabase(PooledPostgresqlDatabase, _PlayhouseExt):  # type: ignore[misc]
    """Pooled PostgreSQL with JSON and (unless ``register_hstore=False``) HStore.

    Example::

        database = PooledPostgresqlExtDatabase("test", register_hstore=False,
                                               max_connections=20)
    """

    def __init__(self, database: Any = None, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("register_hstore", True)  # peewee-async's default
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
            except BaseException:
                conn.close()
                raise
        return conn


class PostgresqlExtDatabase(PooledPostgresqlExtDatabase):
    """peewee-async's "single connection" extension class, pooled here too.

    Example::

        database = PostgresqlExtDatabase("test", register_hstore=False)
    """
