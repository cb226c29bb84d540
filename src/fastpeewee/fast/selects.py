"""SELECTs awaited natively: ``db.list``, ``db.get`` and ``aexecute`` of a select.

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

from ..contracts.peewee import set_cursor_wrapper, unexecuted_on
from .rows import NO_ROW, first_object, model_rows
from .shapes import compiled_first_row, compiled_select

__all__ = ["aexecute_select", "aget", "native"]


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
