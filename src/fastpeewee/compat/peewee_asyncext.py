"""peewee-async's PostgreSQL extension classes: ``playhouse.postgres_ext`` fields
(``BinaryJSONField``, ``JSONField``, ``HStoreField``, arrays) on fastpeewee.

JSON support is always on. HStore is registered with both drivers on every
new connection (asyncpg's ``pg_contrib.hstore`` codec, psycopg's hstore
adapters) unless ``register_hstore=False``; the database needs the extension
(``CREATE EXTENSION hstore``) before the first connection opens. Example::

    import fastpeewee.compat.peewee_asyncext as peewee_asyncext

    database = peewee_asyncext.PooledPostgresqlExtDatabase("test", max_connections=20)
"""

from __future__ import annotations

from ._ext import PooledPostgresqlExtDatabase, PostgresqlExtDatabase

__all__ = ["PooledPostgresqlExtDatabase", "PostgresqlExtDatabase"]
