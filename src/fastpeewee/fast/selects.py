"""SELECTs awaited natively: ``db.list``, ``db.get``, ``db.first`` and ``aexecute`` of a select.

peewee's own path (``list(query)``, ``query.get()``) only builds SQL, runs it
through ``execute_sql`` and wraps the cursor; here the same steps run on the
event loop directly, without the greenlet bridge, with SQL from the shape
cache (:mod:`fastpeewee.fast.shapes`) and rows from :mod:`fastpeewee.fast.rows`. The
query object ends up exactly as peewee leaves it (its cursor wrapper cached
on it). Queries this does not cover (prefetching ``with_related``, foreign
databases, already executed, custom query classes) take peewee's path.
"""

from __future__ import annotations

from typing import Any

import peewee

from ..contracts.peewee import limit_for_first, query_database, set_cursor_wrapper, unexecuted_on
from .rows import NO_ROW, ModelRows, first_object, model_rows
from .shapes import compiled_first_row, compiled_select

__all__ = ["aexecute_select", "afirst", "aget", "alist", "firsts_natively", "native"]


def _is_select(query: Any) -> bool:
    return isinstance(query, peewee.SelectBase)


def native(db: Any, query: Any) -> bool:
    """True when ``query`` is a select this module runs exactly as peewee would."""
    return _is_select(query) and unexecuted_on(query, db)


async def aexecute_select(db: Any, query: Any) -> Any:
    """``query.execute()`` awaited: the cursor wrapper, also cached on the query.

    Mirrors ``BaseQuery._execute`` (pinned by tests/contracts).
    """
    sql, params, plan = compiled_select(db, query)
    cursor = await db.aexecute_sql(sql, params)
    wrapper = model_rows(query, cursor, plan)
    set_cursor_wrapper(query, wrapper)
    return wrapper


async def alist(db: Any, query: Any) -> list[Any]:
    """``list(query)`` awaited: every row, the cursor wrapper cached on the query."""
    wrapper = await aexecute_select(db, query)
    if type(wrapper) is ModelRows:
        return wrapper.all_rows()
    return list(wrapper)


def firsts_natively(db: Any, query: Any) -> bool:
    """True when ``query.first()`` is peewee's ``SelectBase.first`` and would run on ``db``."""
    kind = type(query)
    return (
        _is_select(query)
        and kind.first is peewee.SelectBase.first
        and kind.peek is peewee.SelectBase.peek
        and query_database(query) is db
    )


async def afirst(db: Any, query: Any, n: int) -> Any:
    """``query.first(n)`` awaited (``SelectBase.first``, then ``peek``): the first row,
    a list of the first ``n`` rows when ``n`` is not 1, or None.

    The LIMIT is set on the query itself and its rows cached on it, as peewee
    does (mirrors ``SelectBase.first`` and ``peek``, pinned by tests/contracts).
    """
    limit_for_first(query, n)
    if not native(db, query):  # its rows already read (same LIMIT), or relations to load
        return await db.run(query.peek, n=n)
    rows = (await aexecute_select(db, query))[:n]
    if rows:
        return rows[0] if n == 1 else rows
    return None


def gets_like_peewee(query: Any) -> bool:
    """True when ``query.get()`` is peewee's ``BaseModelSelect.get``."""
    return type(query).get is peewee.BaseModelSelect.get


async def aget(db: Any, query: Any) -> Any:
    """``query.get()`` awaited (``BaseModelSelect.get``): first row or ``DoesNotExist``.

    peewee runs ``query.paginate(1, 1)``, a clone; its SQL comes from the shape
    cache without building the clone, and its rows wrap the same way (paging
    changes neither the columns nor the row type). Mirrors ``BaseModelSelect.get``
    (pinned by tests/contracts).
    """
    sql, params, plan = compiled_first_row(db, query)
    cursor = await db.aexecute_sql(sql, params)
    found = first_object(query, cursor, plan)
    if found is NO_ROW:
        clone = query.paginate(1, 1)
        sql, params = clone.sql()
        raise query.model.DoesNotExist(
            f"{clone.model} instance matching query does not exist:\nSQL: {sql}\nParams: {params}"
        )
    return found
