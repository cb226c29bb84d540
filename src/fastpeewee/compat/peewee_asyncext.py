"""peewee-async's PostgreSQL extension classes: ``playhouse.postgres_ext`` fields
(``BinaryJSONField``, ``JSONField``, ``HStoreField``, arrays) on fastpeewee.

JSON support is always on. HStore, off by default as in peewee's
``PostgresqlExtDatabase``, is registered with both drivers on every new
connection (asyncpg's ``pg_contrib.hstore`` codec, psycopg's hstore adapters)
with ``register_hstore=True``; the database then needs the extension
(``CREATE EXTENSION hstore``), or the first connection fails with
``ImproperlyConfigured`` naming it. Example::

    import fastpeewee.compat.peewee_asyncext as peewee_asyncext

    database = peewee_asyncext.PooledPostgresqlExtDatabase(
        "test", register_hstore=True, max_connections=20
    )
"""

from __future__ import annotations

from ._ext import PooledPostgresqlExtDatabase, PostgresqlExtDatabase

__all__ = ["PooledPostgresqlExtDatabase", "PostgresqlExtDatabase"]
