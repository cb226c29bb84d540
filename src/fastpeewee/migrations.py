"""Apply schema migrations once, even when several workers start at once.

A migration is a function ``fn(migrator, db)`` taking peewee's
``playhouse.migrate`` migrator of the database (``SqliteMigrator``,
``PostgresqlMigrator`` or ``MySQLMigrator``), the same signature as the
``up(migrator, db)`` of peewee's ``playhouse.migrations`` files::

    def add_nickname(migrator, db):
        migrator.migrate(migrator.add_column("user", "nickname", peewee.CharField(null=True)))

    migrate(db, [add_nickname])             # a script, start-up code before the loop
    await amigrate(db, [add_nickname])      # an app's start-up inside the loop

:func:`migrate` takes :data:`~fastpeewee.locks.SCHEMA_LOCK` (the lock
``create_tables`` takes), reads which names its history table records, runs
the others in order, each recording its name in the same transaction, and
returns the names it ran. A second worker waits at the lock, then finds every
name recorded and runs nothing. Directory-based tools run the same way under
:func:`~fastpeewee.locks.lock` (see the README's "Migrations").

Transactions: on PostgreSQL and SQLite the whole run is one transaction (the
lock is the transaction's), so a failing migration rolls back the run's earlier
ones too. MySQL/MariaDB commit implicitly at every DDL statement: a failure
leaves the statements before it applied (its name unrecorded); the lock there is
``GET_LOCK``, which survives those commits and costs its connection (the pool
does not reuse a connection whose session changed).

Cancellation: on PostgreSQL and SQLite a cancelled :func:`amigrate` rolls the
whole run back. On MySQL/MariaDB it cannot (the DDL has committed), so a
cancellation that arrives while a migration runs lets that migration finish
and record its name, then raises :class:`asyncio.CancelledError` without
starting the next one; a second cancellation stops at once (the migration
may then be applied and unrecorded). Outside a migration (waiting for the
lock, reading the history) it stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import peewee
from playhouse.migrate import SchemaMigrator

from .locks import DEFAULT_TIMEOUT, SCHEMA_LOCK, lock

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["DEFAULT_TABLE", "Migration", "amigrate", "history", "migrate", "migration_name"]

DEFAULT_TABLE = "fastpeewee_migration"
"""The table :func:`migrate` records applied migrations in (``name``, ``applied``)."""

Migration = Callable[[Any, Any], object]
"""A migration: ``fn(migrator, db)``; its name is :func:`migration_name`."""


def migration_name(fn: Migration) -> str:
    """The name a migration is recorded under: its ``migration_name`` attribute, or
    its ``__name__``. Renaming the function makes it a new migration."""
    name = getattr(fn, "migration_name", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise ValueError(
            f"migration {fn!r} has no name: use a def, or set fn.migration_name = '0001_...'"
        )
    return name


def history(db: AsyncDatabase, table: str = DEFAULT_TABLE) -> type[peewee.Model]:
    """The model of the history table ``table`` of ``db`` (not created here).

    Example::

        names = [row.name for row in history(db).select()]
    """
    meta = type("Meta", (), {"database": db, "table_name": table})
    return type(
        "MigrationHistory",
        (peewee.Model,),
        {
            "__module__": __name__,
            "name": peewee.CharField(max_length=255, unique=True),
            "applied": peewee.DateTimeField(default=datetime.datetime.now),
            "Meta": meta,
        },
    )


def migrate(
    db: AsyncDatabase,
    migrations: Sequence[Migration],
    *,
    table: str = DEFAULT_TABLE,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> list[str]:
    """Run the migrations not yet recorded in ``table``, in order, under the schema
    lock; returns their names (empty when every one had run). Sync code.

    ``timeout``: seconds to wait for another worker's run (then
    :class:`~fastpeewee.locks.LockTimeout`). Example::

        applied = migrate(db, [add_nickname, fill_nickname])
    """
    return _migrate(db, migrations, table, timeout, _Steps())


@dataclass
class _Steps:
    """Where a run is (``running``: inside a migration), and whether to stop before
    the next migration (``stop``: :func:`amigrate` was cancelled during one)."""

    running: bool = False
    stop: bool = False


def _migrate(
    db: AsyncDatabase,
    migrations: Sequence[Migration],
    table: str,
    timeout: float | None,
    steps: _Steps,
) -> list[str]:
    names = [migration_name(fn) for fn in migrations]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"migration names must be unique; repeated: {', '.join(twice)}")
    model: Any = history(db, table)
    applied: list[str] = []
    with lock(db, SCHEMA_LOCK, timeout=timeout):
        model.create_table(safe=True)
        done = {row.name for row in model.select(model.name)}
        migrator = SchemaMigrator.from_database(db)
        for name, fn in zip(names, migrations, strict=True):
            if name in done:
                continue
            if steps.stop:
                break
            # A savepoint on PostgreSQL and SQLite (the run's transaction holds the
            # lock); nothing on MySQL, whose DDL would end a savepoint.
            steps.running = True
            try:
                with migrator.migration_context(getattr(fn, "atomic", True)):
                    fn(migrator, db)
                    model.create(name=name)
            finally:
                steps.running = False
            applied.append(name)
    return applied


async def amigrate(
    db: AsyncDatabase,
    migrations: Sequence[Migration],
    *,
    table: str = DEFAULT_TABLE,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> list[str]:
    """:func:`migrate` from async code (an app's start-up): the sync migrations run
    through ``db.run``, their queries waiting on the event loop. On MySQL a
    cancellation during a migration waits for it to be recorded (see the module's
    "Cancellation"). Example::

        async def lifespan(app):
            await amigrate(db, MIGRATIONS)
            yield
    """
    steps = _Steps()
    if not isinstance(db, peewee.MySQLDatabase) or db.transaction_depth():
        # One transaction (or the caller's): a cancellation rolls it all back.
        return await db.run(_migrate, db, migrations, table, timeout, steps)
    # The run goes on in a task of its own, so a cancellation can wait for the
    # migration in progress instead of cutting its DDL from its record.
    run = asyncio.ensure_future(db.run(_migrate, db, migrations, table, timeout, steps))
    try:
        return await asyncio.shield(run)
    except asyncio.CancelledError:
        if run.done():
            raise
        if steps.running:
            steps.stop = True
        else:
            run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run  # cancelled again: that cancels the run too
        raise
