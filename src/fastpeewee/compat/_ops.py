"""The operations behind ``Manager`` and the module-level functions of peewee-async.

Each takes the database to run on explicitly, so models need not be bound to
it (peewee-async's ``Manager`` documented plain, unbound ``peewee.Model``
classes). Statements run through the database's async API; peewee's own code
(``delete_instance``, ``prefetch``, ``count``, ``scalar``) runs through
``db.run`` unchanged.
"""

from __future__ import annotations

import builtins
from typing import Any

import peewee

from ..contracts.peewee import dirty_names, get_pk, pk_expr, query_database, set_pk
from ..database import AsyncDatabase

__all__ = [
    "count",
    "create",
    "create_or_get",
    "database_of",
    "delete",
    "execute",
    "get",
    "get_or_create",
    "get_or_none",
    "prefetch",
    "resolve",
    "scalar",
    "update",
]


def resolve(database: Any) -> AsyncDatabase:
    """The fastpeewee database behind ``database`` (a ``peewee.Proxy`` is followed)."""
    if isinstance(database, peewee.Proxy):
        database = database.obj
        if database is None:
            raise peewee.InterfaceError(
                "the database proxy is not initialized; call proxy.initialize(db) first"
            )
    if not isinstance(database, AsyncDatabase):
        raise peewee.InterfaceError(
            f"expected a fastpeewee database, got {type(database).__name__}; use e.g. "
            "fastpeewee.compat.peewee_async.PooledPostgresqlDatabase"
        )
    return database


def database_of(source: Any) -> AsyncDatabase:
    """The database a model, model instance or query is bound to."""
    if isinstance(source, peewee.BaseQuery):
        database = query_database(source)
        model = getattr(source, "model", None)
        if database is None and isinstance(model, type):
            database = model._meta.database  # type: ignore[attr-defined]
    else:
        database = source._meta.database
    if database is None:
        raise peewee.InterfaceError(
            f"{source!r} is not bound to a database; bind the model "
            "(class Meta: database = db) or use Manager(db)"
        )
    return resolve(database)


def _model_database(model: type[Any]) -> AsyncDatabase | None:
    database = model._meta.database
    if isinstance(database, peewee.Proxy):
        database = database.obj
    return database if isinstance(database, AsyncDatabase) else None


async def execute(db: AsyncDatabase, query: Any) -> Any:
    """Run ``query`` on ``db``; returns what ``query.execute()`` returns.

    Every call runs the query afresh, as in peewee-async (peewee caches the
    result of an executed query object: rows, or an INSERT's RETURNING values).
    """
    return await db.run(query.clone().execute, db)


async def get(db: AsyncDatabase, source_: Any, *args: Any, **kwargs: Any) -> Any:
    """The first object of a model or query matching the conditions, or ``DoesNotExist``."""
    query: Any
    if isinstance(source_, peewee.Query):
        query, model = source_, source_.model  # type: ignore[attr-defined]
    else:
        query, model = source_.select(), source_
    conditions = list(args)
    lookups = {}
    for name, value in kwargs.items():
        if "__" in name:
            lookups[name] = value  # Django-style lookups, through peewee's filter()
        else:
            conditions.append(getattr(model, name) == value)
    if conditions:
        query = query.where(*conditions)
    if lookups:
        query = query.filter(**lookups)
    rows = await execute(db, query.limit(1))
    for row in rows:
        return row
    sql, params = query.sql()
    raise model.DoesNotExist(
        f"{model.__name__} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
    )


async def get_or_none(db: AsyncDatabase, source_: Any, *args: Any, **kwargs: Any) -> Any:
    """Like :func:`get`, returning None instead of raising ``DoesNotExist``."""
    try:
        return await get(db, source_, *args, **kwargs)
    except peewee.DoesNotExist:
        return None


async def create(db: AsyncDatabase, model_: type[Any], **data: Any) -> Any:
    """INSERT a new object (``save()`` is not called, as in peewee-async)."""
    obj = model_(**data)
    new_pk = await db.run(model_.insert(**obj.__data__).execute, db)
    if model_._meta.primary_key is not False and get_pk(obj) is None and new_pk is not None:
        set_pk(obj, new_pk)
    dirty_names(obj).clear()
    return obj


async def update(db: AsyncDatabase, obj: Any, only: Any = None) -> int:
    """UPDATE ``obj``'s row (``save()`` is not called); ``only`` limits the fields."""
    meta = obj._meta
    data = dict(obj.__data__)
    if only:
        wanted = {f if isinstance(f, str) else f.name for f in only}
        data = {k: v for k, v in data.items() if k in wanted}
    if meta.only_save_dirty:
        dirty = {f.name for f in obj.dirty_fields}
        data = {k: v for k, v in data.items() if k in dirty}
        if not data:
            return 0
    pk_names = meta.primary_key.field_names if meta.composite_key else [meta.primary_key.name]
    for name in pk_names:
        data.pop(name, None)
    if not data:
        raise ValueError(f"no data to save for {type(obj).__name__} (only={only!r})")
    query = type(obj).update(**data).where(pk_expr(obj))
    rows: int = await db.run(query.execute, db)
    dirty_names(obj).difference_update(data)
    return rows


async def delete(
    db: AsyncDatabase, obj: Any, recursive: bool = False, delete_nullable: bool = False
) -> int:
    """DELETE ``obj`` through its ``delete_instance``; returns the rows deleted.

    ``recursive`` also deletes (or, for nullable foreign keys without
    ``delete_nullable``, detaches) the rows that depend on it.
    """
    if _model_database(type(obj)) is db:
        rows: int = await db.run(obj.delete_instance, recursive, delete_nullable)
        return rows
    # The model is unbound or bound elsewhere: the same steps as peewee 4's
    # delete_instance, with every statement sent to `db`. A mirror of
    # Model.delete_instance, pinned by tests/contracts (contracts.peewee.MIRRORS).

    def work() -> int:
        if recursive:
            for query, fk in obj.dependencies(exclude_null_children=not delete_nullable):
                model = fk.model
                if fk.null and not delete_nullable:
                    model.update(**{fk.name: None}).where(query).execute(db)
                else:
                    model.delete().where(query).execute(db)
        deleted: int = type(obj).delete().where(pk_expr(obj)).execute(db)
        return deleted

    return await db.run(work)


async def get_or_create(
    db: AsyncDatabase, model_: type[Any], defaults: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[Any, bool]:
    """``(object, created)``: get by ``kwargs``, else create with ``defaults`` added.

    Two tasks racing to create the same row: the loser's INSERT fails on the
    unique constraint inside a savepoint, and it gets the winner's row.
    """
    try:
        return await get(db, model_, **kwargs), False
    except model_.DoesNotExist:
        pass
    data = {**(defaults or {}), **{k: v for k, v in kwargs.items() if "__" not in k}}
    try:
        async with db.atomic():
            return await create(db, model_, **data), True
    except peewee.IntegrityError:
        try:
            return await get(db, model_, **kwargs), False
        except model_.DoesNotExist:
            pass
        raise


async def create_or_get(db: AsyncDatabase, model_: type[Any], **kwargs: Any) -> tuple[Any, bool]:
    """``(object, created)``: create, or on a unique conflict get by the unique fields given.

    The INSERT runs in a savepoint, so an enclosing transaction survives the conflict.
    """
    try:
        async with db.atomic():
            return await create(db, model_, **kwargs), True
    except peewee.IntegrityError:
        fields = model_._meta.fields
        conditions = [
            fields[name] == value
            for name, value in kwargs.items()
            if name in fields and (fields[name].unique or fields[name].primary_key)
        ]
        if not conditions:
            raise  # nothing unique to look the existing row up by
        return await get(db, model_, *conditions), False


async def prefetch(
    db: AsyncDatabase, query: Any, *subqueries: Any, prefetch_type: Any = None
) -> builtins.list[Any]:
    """Run ``query`` and one query per subquery, attaching the related rows.

    Returns the objects of ``query`` as a list, their relations filled in.
    """
    if not subqueries:
        return builtins.list(await execute(db, query))
    root = query.clone().bind(db)
    related = [_bound(db, sq) for sq in subqueries]
    options = {} if prefetch_type is None else {"prefetch_type": prefetch_type}
    return await db.run(lambda: builtins.list(peewee.prefetch(root, *related, **options)))


def _bound(db: AsyncDatabase, subquery: Any) -> Any:
    if isinstance(subquery, tuple):
        return (_bound(db, subquery[0]), *subquery[1:])
    if isinstance(subquery, peewee.Query):
        return subquery.clone().bind(db)  # type: ignore[arg-type]
    if isinstance(subquery, type) and issubclass(subquery, peewee.Model):
        return subquery.select().bind(db)  # type: ignore[arg-type]
    return subquery  # a ModelAlias: peewee selects from it itself


async def count(db: AsyncDatabase, query: Any, clear_limit: bool = False) -> int:
    """``SELECT COUNT(1)`` over ``query``; ``clear_limit`` drops its LIMIT/OFFSET first."""
    rows: int = await db.run(query.count, db, clear_limit)
    return rows


async def scalar(db: AsyncDatabase, query: Any, as_tuple: bool = False) -> Any:
    """The first column of the first row (the whole first row with ``as_tuple``)."""
    return await db.run(query.scalar, db, as_tuple)
