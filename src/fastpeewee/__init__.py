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
from .drivers.pooler import PoolerRefused
from .errors import (
    MissingGreenletBridge,
    PoolBackoff,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
    TransactionLost,
    UnloadedRelation,
    is_unavailable,
)
from .fast.compiled import Param, Template, Uncompilable, compile_query
from .fast.prepared import PreparedQuery
from .integrations.asgi import DatabaseMiddleware
from .integrations.body_limit import BodySizeLimitMiddleware
from .integrations.core import ErrorReply, database_lifespan, error_reply
from .integrations.health import readiness
from .integrations.wsgi import WSGIDatabaseMiddleware
from .locks import LockTimeout, alock, lock
from .migrations import amigrate, migrate
from .model import AsyncModel, AsyncModelMixin
from .pool import PoolConfig, PoolStats
from .replicas import ReplicaStatus, RoutingPin, is_read
from .retries import RetryPolicy, is_retryable
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
from .testing import ConnectionLeak, TestTransaction, TestTransactionConflict, find_leaks
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
    "ConnectionLeak",
    "DatabaseMiddleware",
    "ErrorReply",
    "LockTimeout",
    "MissingGreenletBridge",
    "Param",
    "PoolBackoff",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "PoolerRefused",
    "PreparedQuery",
    "ReplicaStatus",
    "RetryPolicy",
    "RoutingPin",
    "Schemas",
    "Template",
    "TestTransaction",
    "TestTransactionConflict",
    "TooManyWaiters",
    "TransactionLost",
    "Uncompilable",
    "UnloadedRelation",
    "WSGIDatabaseMiddleware",
    "afetch",
    "afetch_one",
    "alock",
    "amigrate",
    "async_atomic",
    "async_savepoint",
    "async_transaction",
    "await_",
    "compile_query",
    "database_lifespan",
    "error_reply",
    "fetch",
    "fetch_one",
    "find_leaks",
    "greenlet_spawn",
    "is_read",
    "is_retryable",
    "is_unavailable",
    "lock",
    "migrate",
    "readiness",
    "schema_type",
    "schemas",
    "to_pydantic",
]
