"""fastpeewee: Peewee for async Python, with one database object for async and sync code.

Example::

    from fastpeewee import AsyncSqliteDatabase

    db = AsyncSqliteDatabase("app.db")

    class User(db.Model):
        name = peewee.CharField()

    await db.acreate_tables([User])
    ann = await User.acreate(name="ann")
"""

from ._version import __version__ as __version__
from .backends.mysql import AsyncMySQLDatabase
from .backends.postgres import AsyncPostgresqlDatabase
from .backends.sqlite import AsyncSqliteDatabase
from .bridge import await_, greenlet_spawn
from .database import AsyncDatabase
from .errors import (
    MissingGreenletBridge,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
    TransactionLost,
    UnloadedRelation,
    is_unavailable,
)
from .fast.compiled import Param, Template, Uncompilable, compile_query
from .integrations.asgi import DatabaseMiddleware
from .integrations.body_limit import BodySizeLimitMiddleware
from .integrations.core import ErrorReply, database_lifespan, error_reply
from .integrations.wsgi import WSGIDatabaseMiddleware
from .locks import LockTimeout, alock, lock
from .model import AsyncModel, AsyncModelMixin
from .pool import PoolConfig, PoolStats
from .schema import (
    Schemas,
    afetch,
    afetch_one,
    fetch,
    fetch_one,
    schema_type,
    schemas,
    to_pydantic,
)
from .transactions import async_atomic, async_savepoint, async_transaction

# playhouse.pwasyncio calls the database mixin AsyncDatabaseMixin.
AsyncDatabaseMixin = AsyncDatabase

__all__ = [
    "AsyncDatabase",
    "AsyncDatabaseMixin",
    "AsyncModel",
    "AsyncModelMixin",
    "AsyncMySQLDatabase",
    "AsyncPostgresqlDatabase",
    "AsyncSqliteDatabase",
    "BodySizeLimitMiddleware",
    "DatabaseMiddleware",
    "ErrorReply",
    "LockTimeout",
    "MissingGreenletBridge",
    "Param",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "Schemas",
    "Template",
    "TooManyWaiters",
    "TransactionLost",
    "Uncompilable",
    "UnloadedRelation",
    "WSGIDatabaseMiddleware",
    "afetch",
    "afetch_one",
    "alock",
    "async_atomic",
    "async_savepoint",
    "async_transaction",
    "await_",
    "compile_query",
    "database_lifespan",
    "error_reply",
    "fetch",
    "fetch_one",
    "greenlet_spawn",
    "is_unavailable",
    "lock",
    "schema_type",
    "schemas",
    "to_pydantic",
]
