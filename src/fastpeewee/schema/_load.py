"""Loading rows with exactly the relations a schema reads, in a fixed number of queries.

The schema is read into a plan: a to-one relation whose own schema needs no
list is a LEFT OUTER JOIN on the main query (so ``item.owner`` costs no query at
all); every back-reference, and every to-one relation under which a list is
read, is one ``peewee.Load`` query for all the parent rows at once. The number
of queries is therefore one plus the number of such relations, whatever the
number of rows. Validation happens afterwards, with every relation in memory.

With the parents' keys in memory (``PREFETCH_TYPE.MATERIALIZE``, the default
for a query with a LIMIT), :func:`plan_loading` leaves the ``Load`` queries out
of the main query and :func:`load`/:func:`aload` run them one by one as plain
selects: ``db.list`` runs each on the event loop with cached SQL shapes and
fast hydration, where a query carrying ``with_related`` takes peewee's whole
path through the greenlet bridge. The rows end up as peewee's ``Load`` leaves
them (``_bucket``: back-reference lists in the instance's ``__dict__``, each
child's foreign key pointing at its parent object).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee
from pydantic import BaseModel, TypeAdapter

from ..contracts.peewee import load_tree, query_limit, returns_models
from ..fast.compiled import model_cache
from ._relations import LOADED, Relation, relations_of

__all__ = [
    "MATERIALIZE_MAX",
    "Loading",
    "aload",
    "as_query",
    "load",
    "not_found",
    "plan_loading",
    "prepare",
    "validate",
]

S = TypeVar("S", bound=BaseModel)

# Up to this LIMIT the related rows are selected by the parents' keys, sent as
# parameters (exact even when an unordered LIMIT could pick other rows on a
# second run); beyond it, or with no LIMIT, by a subquery repeating the parent
# query, which has no parameter-count limit.
MATERIALIZE_MAX = 10_000


@dataclass(frozen=True)
class _Node:
    """What to load under the rows of one model for one schema."""

    joins: tuple[tuple[Relation, _Node], ...]  # to-one, joined into the same query
    loads: tuple[tuple[Relation, _Node], ...]  # one query each (peewee.Load)


# Plans kept per model (on the model: a module-level cache keyed by the model would
# keep a model made at runtime alive), the oldest dropped first.
PLANS_MAX = 64


def _plan(schema: type[BaseModel], model: type[peewee.Model]) -> _Node:
    plans = model_cache(model, "schema_plans", PLANS_MAX)
    plan: _Node | None = plans.get(schema)
    if plan is None:
        plan = _plan_in(schema, model, ())
        plans.put(schema, plan)
    return plan


def _plan_in(schema: type[BaseModel], model: type[peewee.Model], seen: tuple[Any, ...]) -> _Node:
    key = (schema, model)
    if key in seen:
        path = " -> ".join(s.__name__ for s, _ in (*seen, key))
        raise ValueError(
            f"{schema.__name__} nests itself ({path}); rows are loaded to a fixed depth, "
            "so give the nested level a schema of its own without that relation"
        )
    joins, loads = [], []
    for relation in relations_of(schema, model):
        child = _plan_in(relation.schema, relation.target, (*seen, key))
        if relation.many or child.loads:
            loads.append((relation, child))
        else:
            joins.append((relation, child))
    return _Node(tuple(joins), tuple(loads))


def _join(query: Any, source: Any, relation: Relation, node: _Node) -> Any:
    # An alias per join, so one table reached twice (author, editor) joins twice.
    target = relation.target.alias()
    field = relation.field
    on = getattr(source, field.name) == getattr(target, field.rel_field.name)
    query = (
        query.switch(source)
        .join(target, peewee.JOIN.LEFT_OUTER, on=on, attr=field.name)
        .select_extend(target)
    )
    for sub_relation, sub_node in node.joins:
        query = _join(query, target, sub_relation, sub_node)
    return query


def _joined(query: Any, node: _Node) -> Any:
    model = query.model
    for relation, child in node.joins:
        query = _join(query, model, relation, child)
    return query.switch(model) if node.joins else query


def _shape(query: Any, node: _Node, strategy: int) -> Any:
    query = _joined(query, node)
    loads = [
        peewee.Load(relation.accessor, _related(relation, child, strategy), strategy)
        for relation, child in node.loads
    ]
    return query.with_related(*load_tree(query), *loads) if loads else query


def _related_base(relation: Relation) -> Any:
    target = relation.target
    query = target.select()
    if relation.many:  # a stable order for the lists
        query = query.order_by(*_primary_key(target))
    return query


def _related(relation: Relation, node: _Node, strategy: int) -> Any:
    return _shape(_related_base(relation), node, strategy)


def _primary_key(model: type[peewee.Model]) -> tuple[Any, ...]:
    return tuple(model._meta.get_primary_keys())  # type: ignore[no-untyped-call]


def as_query(query: Any) -> peewee.ModelSelect:
    """A model select from a model select or a model class; anything else is refused."""
    if isinstance(query, type) and issubclass(query, peewee.Model):
        query = query.select()
    if not isinstance(query, peewee.ModelSelect):
        raise TypeError(f"expected a model select such as User.select(), got {query!r}")
    if not returns_models(query):
        raise ValueError("the query must return model instances, not dicts or tuples")
    return query


def _strategy(query: Any, prefetch_type: int | None) -> int:
    if prefetch_type is not None:
        return prefetch_type
    limit = query_limit(query)
    small = limit is not None and limit <= MATERIALIZE_MAX
    return peewee.PREFETCH_TYPE.MATERIALIZE if small else peewee.PREFETCH_TYPE.WHERE


def prepare(query: Any, schema: type[BaseModel], prefetch_type: int | None = None) -> Any:
    """``query`` with the joins and ``Load`` queries that ``schema`` needs."""
    query = as_query(query)
    return _shape(query, _plan(schema, query.model), _strategy(query, prefetch_type))


@dataclass(frozen=True)
class Loading:
    """How to load rows for a schema: run ``query``, then :func:`load` ``node`` on its rows.

    ``node`` is None when ``query`` loads every relation itself (peewee's
    ``with_related``, for the subquery strategies or a query that already has
    ``Load`` nodes of its own).
    """

    query: Any
    node: _Node | None


def plan_loading(query: Any, schema: type[BaseModel], prefetch_type: int | None = None) -> Loading:
    """What :func:`fetch`-like callers run for ``query`` read as ``schema``."""
    query = as_query(query)
    strategy = _strategy(query, prefetch_type)
    node = _plan(schema, query.model)
    # Always a copy: running the caller's own query object would cache its rows on
    # it, and the next afetch of that same object would get them back.
    if strategy != peewee.PREFETCH_TYPE.MATERIALIZE or load_tree(query):
        shaped = _shape(query, node, strategy)
        return Loading(shaped if shaped is not query else query.clone(), None)
    query = _joined(query, node) if node.joins else query.clone()
    return Loading(query, node if node.loads else None)


class _Keys(peewee.Value):
    """The parents' keys on the right of ``IN``: the SQL and parameters of ``Value(keys)``.

    peewee renders a list as one ``Value`` node per key, each dispatched and
    converted on its own (0.4-0.9 ms for 100 keys, more than the rest of the
    query); this writes the same ``(%s, %s, ...)`` in one literal and the
    keys, through the column's ``db_value``, as parameters in one step. It stays
    a multi-value ``Value``, so ``IN`` checks it for emptiness without
    rendering it. tests/schema/test_schema_key_loads.py pins the SQL and
    parameters to peewee's own on every backend.
    """

    def __init__(self, keys: list[Any]) -> None:
        super().__init__(keys, unpack=False)
        self.keys = keys
        self.multi = True
        self.values = keys  # what IN looks at to tell an empty list

    def __sql__(self, ctx: Any) -> Any:
        params = getattr(ctx, "_values", None)
        if ctx.state.value_literals or not isinstance(params, list):
            # Keys written inline (query_to_string), or a peewee whose Context
            # differs: one Value per key, as peewee renders a list.
            return ctx.sql(peewee.EnclosedNodeList([peewee.Value(key) for key in self.keys]))
        ctx.literal("(" + ", ".join([ctx.state.param or "?"] * len(self.keys)) + ")")
        converter = ctx.state.converter  # the column's db_value, set by the IN expression
        params.extend(map(converter, self.keys) if converter else self.keys)
        return ctx


def _distinct(values: Iterable[Any]) -> list[Any]:
    """Non-NULL values, first occurrence order (peewee's ``Load._distinct``)."""
    return [key for key in dict.fromkeys(values) if key is not None]


def _children_query(relation: Relation, node: _Node, parents: list[Any]) -> Any:
    """The select of ``relation``'s rows for ``parents`` by their keys; None without keys.

    As peewee's ``Load._link_children``/``_link_parent`` build it for ``MATERIALIZE``.
    """
    field = relation.field
    if relation.many:
        keys = _distinct(parent.__data__.get(field.rel_field.name) for parent in parents)
        column = field
    else:
        keys = _distinct(parent.__data__.get(field.name) for parent in parents)
        column = field.rel_field
    if not keys:
        return None
    return _joined(_related_base(relation), node).where(column << _Keys(keys))


def _attach(relation: Relation, children: list[Any], parents: list[Any]) -> None:
    """Hang ``children`` on ``parents`` exactly as peewee's ``_bucket`` does."""
    field = relation.field
    name, rel_name = field.name, field.rel_field.name
    if relation.many:
        buckets: dict[Any, list[Any]] = {}
        for child in children:
            buckets.setdefault(child.__data__[name], []).append(child)
        for parent in parents:
            rows = buckets.get(parent.__data__[rel_name], [])
            for child in rows:
                child.__rel__[name] = parent
            setattr(parent, relation.attr, rows)  # the accessor has no __set__
    else:
        by_key = {child.__data__[rel_name]: child for child in children}
        for parent in parents:
            key = parent.__data__[name]
            if key in by_key:
                parent.__rel__[name] = by_key[key]


def load(rows: list[Any], node: _Node, run: Callable[[Any], list[Any]]) -> None:
    """Load ``node``'s list relations under ``rows``, one ``run(query)`` per relation."""
    if not rows:
        return
    for relation, child in node.loads:
        query = _children_query(relation, child, rows)
        children = run(query) if query is not None else []
        _attach(relation, children, rows)
        load(children, child, run)


async def aload(rows: list[Any], node: _Node, run: Callable[[Any], Awaitable[list[Any]]]) -> None:
    """:func:`load` with an awaited ``run`` (``db.list``)."""
    if not rows:
        return
    for relation, child in node.loads:
        query = _children_query(relation, child, rows)
        children = await run(query) if query is not None else []
        _attach(relation, children, rows)
        await aload(children, child, run)


# Keyed by the schema alone: a schema holds no model, database or query.
@functools.lru_cache(maxsize=128)
def _adapter(schema: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[schema])  # type: ignore[valid-type]


def validate(rows: list[Any], schema: type[S]) -> list[S]:
    """Validate rows loaded for ``schema`` (:func:`prepare`, :func:`plan_loading`) in one pass.

    The ``LOADED`` context spares each row the unloaded-relation check: the
    plan loaded every relation the schema reads.
    """
    return _adapter(schema).validate_python(rows, from_attributes=True, context=LOADED)


def not_found(query: Any) -> peewee.DoesNotExist:
    """The model's ``DoesNotExist``, worded as ``query.get()`` words it."""
    sql, params = query.sql()
    return query.model.DoesNotExist(  # type: ignore[no-any-return]
        f"{query.model.__name__} instance matching query does not exist:\n"
        f"SQL: {sql}\nParams: {params}"
    )
