"""SQL of common SELECT shapes, compiled once and reused with new values.

A ``Model.select()`` (all fields or some of its own fields) with a WHERE made
of ``field <op> value`` comparisons joined by AND/OR, an ORDER BY of its own
fields, and LIMIT/OFFSET has a *shape*: everything but the values. The shape
is read from the query's attributes; every other attribute must still hold
its default, else (joins, GROUP BY, subqueries, functions, ``IN`` lists,
``None`` values that render ``IS NULL``, ...) peewee builds the SQL as usual.

The first query of a shape is compiled with :class:`~fastpeewee.fast.compiled.Param`
placeholders in place of its values and checked against the SQL and
parameters peewee builds for it; only a template that reproduces them is
kept. Plans live per model and database, at most
:data:`~fastpeewee.fast.fastpath.PLANS_MAX` a model, and are dropped when the
model's fingerprint changes (see :mod:`fastpeewee.fast.fastpath`). A shape key
holds no values, so queries that differ only in their values share one plan.
"""

from __future__ import annotations

import datetime
import decimal
import operator
import uuid
from typing import Any

import peewee

from ..contracts.peewee import meta_cache, ordering_parts, select_parts, with_select_parts
from .compiled import Param, Uncompilable, is_own_field, model_fingerprint
from .fastpath import Plan, plan_for

__all__ = [
    "ALL_FIELDS",
    "compiled_first_row",
    "compiled_select",
    "first_row_sql",
    "select_sql",
    "shape_of",
]

Compiled = tuple[str, list[Any], Plan | None]
"""SQL, parameters, and the checked plan they came from (None: built by peewee)."""

_SCALARS = frozenset(
    {
        int,
        float,
        str,
        bytes,
        bool,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        uuid.UUID,
    }
)
_COMPARE = frozenset({"=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE"})
_BOOLEAN = frozenset({"AND", "OR"})
_EXPRESSION_ATTRS = frozenset({"lhs", "op", "rhs", "flat"})


class _Unsupported(Exception):
    pass


def _own_field(node: Any, model: Any) -> Any:
    if not is_own_field(node, model):
        raise _Unsupported
    return id(node)


def _where(node: Any, model: Any, values: list[Any]) -> tuple[Any, ...]:
    if type(node) is not peewee.Expression or vars(node).keys() != _EXPRESSION_ATTRS:
        raise _Unsupported
    op = node.op
    if op in _BOOLEAN:
        lhs = _where(node.lhs, model, values)
        return ("B", op, node.flat, lhs, _where(node.rhs, model, values))
    if op not in _COMPARE or type(node.rhs) not in _SCALARS:
        raise _Unsupported
    key = ("C", _own_field(node.lhs, model), op, node.flat)
    values.append(node.rhs)
    return key


def _order(items: Any, model: Any) -> tuple[Any, ...] | None:
    if items is None:
        return None
    keys: list[Any] = []
    for item in items:
        if type(item) is peewee.Ordering:
            parts = ordering_parts(item)
            if parts is None:
                raise _Unsupported
            node, direction, collation, nulls, coerce = parts
            keys.append(("O", _own_field(node, model), direction, collation, nulls, coerce))
        else:
            keys.append(("F", _own_field(item, model)))
    return tuple(keys)


def _bound(value: Any, values: list[Any]) -> bool:
    if value is None:
        return False
    if type(value) is not int:
        raise _Unsupported
    values.append(value)
    return True


def _all_fields(selected: Any, fields: Any) -> bool:
    """True when ``selected`` is the model's own field list, item for item (what
    ``Model.select()`` selects): each is then a plain field of the model, bound
    to it by peewee's ``Metadata.add_field``."""
    return len(selected) == len(fields) and all(map(operator.is_, selected, fields))


ALL_FIELDS = "all fields"
"""The columns part of a shape key for a select of the model's own field list
(``Model.select()``): the plan's model fingerprint holds those fields' ids."""


def shape_of(
    query: Any, page: tuple[int, int] | None = None
) -> tuple[tuple[Any, ...], list[Any]] | None:
    """The shape key of a simple model select and its values in parameter order.

    ``page``: (limit, offset) to use instead of the query's own, i.e. the
    shape of ``query.paginate(...)`` without building that clone.
    """
    if type(query) is not peewee.ModelSelect:
        return None
    parts = select_parts(query)
    if parts is None:
        return None
    where, order_by, query_limit, query_offset, selected, is_default = parts
    model = query.model
    columns: Any = ALL_FIELDS
    if not _all_fields(selected, model._meta.sorted_fields):
        for field in selected:
            if not is_own_field(field, model):
                return None
        columns = tuple(map(id, selected))
    values: list[Any] = []
    try:
        where_key = None if where is None else _where(where, model, values)
        order_key = None if order_by is None else _order(order_by, model)
        if page is None:
            limit = _bound(query_limit, values)
            offset = _bound(query_offset, values)
        else:
            limit = _bound(page[0], values)
            offset = _bound(page[1], values)
    except _Unsupported:
        return None
    key = ("select", columns, is_default, where_key, order_key, limit, offset)
    return key, values


def _with_params(node: Any, counter: list[int]) -> Any:
    if node.op in _BOOLEAN:
        lhs = _with_params(node.lhs, counter)
        return peewee.Expression(lhs, node.op, _with_params(node.rhs, counter), node.flat)
    slot = counter[0]
    counter[0] += 1
    return peewee.Expression(node.lhs, node.op, Param(slot), node.flat)


def _template_query(query: Any, limit: bool, offset: bool) -> Any:
    parts = select_parts(query)
    if parts is None:  # shape_of() found its parts: only a changed query lands here
        raise Uncompilable("not a plain select")
    counter = [0]
    where = None if parts[0] is None else _with_params(parts[0], counter)
    limit_param = offset_param = None
    if limit:
        limit_param = Param(counter[0])
        counter[0] += 1
    if offset:
        offset_param = Param(counter[0])
    return with_select_parts(query, where, limit_param, offset_param)


def _same(mine: list[Any] | None, theirs: list[Any]) -> bool:
    if mine is None or len(mine) != len(theirs):
        return False
    return all(type(a) is type(b) and a == b for a, b in zip(mine, theirs, strict=True))


def _render(db: Any, query: Any) -> tuple[str, list[Any]]:
    sql, params = db.get_sql_context().sql(query).query()
    return sql, params


def select_sql(db: Any, query: Any) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``query`` on ``db``, from the shape cache when it applies."""
    sql, params, _ = compiled_select(db, query)
    return sql, params


def first_row_sql(db: Any, query: Any) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``query.paginate(1, 1)``, without cloning when cached."""
    sql, params, _ = compiled_first_row(db, query)
    return sql, params


def compiled_select(db: Any, query: Any) -> Compiled:
    """:func:`select_sql`, and the plan the SQL came from (its ``layout`` keeps how
    rows are built, see :class:`~fastpeewee.fast.rows.ModelRows`)."""
    return _cached(db, query, shape_of(query), False)


_FIRST_PAGE = (1, 0)  # query.paginate(1, 1): LIMIT 1 OFFSET 0


def compiled_first_row(db: Any, query: Any) -> Compiled:
    """:func:`first_row_sql`, and the plan the SQL came from."""
    return _cached(db, query, shape_of(query, _FIRST_PAGE), True)


def _rendered(db: Any, query: Any) -> Compiled:
    sql, params = _render(db, query)
    return sql, params, None


def _actual(query: Any, first_row: bool) -> Any:
    """The query whose SQL is wanted: ``query`` or its first row's page (a clone)."""
    return query.paginate(1, 1) if first_row else query


def _cached(db: Any, query: Any, found: Any, first_row: bool) -> Compiled:
    if found is None:
        return _rendered(db, _actual(query, first_row))
    key, values = found
    model = query.model
    # plan_for()'s hit path, inline (a hot path): the same checks, no closure built.
    plans = meta_cache(model._meta, "plans")
    plan = None if plans is None else plans.get((key, id(db)))
    if (
        plan is None
        or plan.database() is not db
        or plan.fingerprint != model_fingerprint(model._meta)
    ):
        limit, offset = key[5], key[6]
        plan = plan_for(
            model,
            db,
            key,
            lambda: _template_query(_actual(query, first_row), limit, offset),
            constants=True,
        )
    template = None if plan is None else plan.template
    if template is None:
        return _rendered(db, _actual(query, first_row))
    if not plan.checked:  # type: ignore[union-attr]
        return _check(db, _actual(query, first_row), plan, values)  # type: ignore[arg-type]
    params = template.bind(values)
    if params is None:
        return _rendered(db, _actual(query, first_row))
    return template.sql, params, plan


def _check(db: Any, query: Any, plan: Plan, values: list[Any]) -> Compiled:
    """First use of a plan: keep it only if it reproduces peewee's SQL and parameters."""
    sql, params = _render(db, query)
    template = plan.template
    assert template is not None
    if template.sql != sql or not _same(template.bind(values), params):
        plan.template = None  # peewee renders this shape differently: never reuse it
    plan.checked = True
    return sql, params, None
