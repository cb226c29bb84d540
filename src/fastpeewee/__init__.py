"""fastpeewee: Peewee for async Python, with one database object for async and sync code.

Example::

    from fastpeewee import AsyncSqliteDatabase

    db = AsyncSqliteDatabase("app.db")

    class User(db.Model):
        name = peewee.CharField()

    await db.acreate_tables([User])
    ann = await User.acreate(name="ann")
"""

from .backends.postgres import AsyncPostgresqlDatabase
from .backends.sqlite import AsyncSqliteDatabase
from .bridge import await_, greenlet_spawn
from .compiled import Param, Template, Uncompilable, compile_query
from .database import AsyncDatabase
from .errors import (
    MissingGreenletBridge,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
    TransactionLost,
)
from .model import AsyncModel, AsyncModelMixin
from .pool import PoolConfig, PoolStats
from .transactions import async_atomic, async_savepoint, async_transaction

__version__ = "0.1.0"

# playhouse.pwasyncio calls the database mixin AsyncDatabaseMixin.
AsyncDatabaseMixin = AsyncDatabase

__all__ = [
    "AsyncDatabase",
    "AsyncDatabaseMixin",
    "AsyncModel",
    "AsyncModelMixin",
    "AsyncPostgresqlDatabase",
    "AsyncSqliteDatabase",
    "MissingGreenletBridge",
    "Param",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "Template",
    "TooManyWaiters",
    "TransactionLost",
    "Uncompilable",
    "async_atomic",
    "async_savepoint",
    "async_transaction",
    "await_",
    "compile_query",
    "greenlet_spawn",
]
