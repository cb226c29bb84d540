"""The ``playhouse.db_url`` schemes peewee-async registered, pointing at the compat classes.

``playhouse.db_url.connect("postgresql+pool+async://user@host/db?max_connections=20")``
keeps working after the import change.
"""

from __future__ import annotations

from playhouse.db_url import register_database

from ._databases import (
    MySQLDatabase,
    PooledMySQLDatabase,
    PooledPostgresqlDatabase,
    PostgresqlDatabase,
)
from ._ext import PooledPostgresqlExtDatabase, PostgresqlExtDatabase

__all__ = ["register_schemes"]


def register_schemes() -> None:
    """Register peewee-async's URL schemes with ``playhouse.db_url``."""
    register_database(PooledPostgresqlDatabase, "postgres+pool+async", "postgresql+pool+async")
    register_database(
        PooledPostgresqlExtDatabase, "postgresext+pool+async", "postgresqlext+pool+async"
    )
    register_database(PooledMySQLDatabase, "mysql+pool+async")
    register_database(PostgresqlDatabase, "postgres+async", "postgresql+async")
    register_database(PostgresqlExtDatabase, "postgresext+async", "postgresqlext+async")
    register_database(MySQLDatabase, "mysql+async")
