"""Loading rows with exactly the relations a schema reads, in a fixed number of queries.

The schema is read into a plan: a to-one relation whose own schema needs no
list is a LEFT OUTER JOIN on the main query (so ``item.owner`` costs no query at
all); every back-reference, and every to-one relation under which a list is
read, is one ``peewee.Load`` query for all the parent rows at once. The number
of queries is therefore one plus the number of such relations, whatever the
number of rows. Validation happens afterwards, with every relation in memory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee
from pydantic import BaseModel, TypeAdapter

from ..contracts.peewee import load_tree, query_limit, returns_models
from ..fast.compiled import model_cache
from ._relations import Relation, relations_of

__all__ = ["MATERIALIZE_MAX", "as_query", "not_found", "prepare", "validate"]

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


def _shape(query: Any, node: _Node, strategy: int) -> Any:
    model = query.model
    for relation, child in node.joins:
        query = _join(query, model, relation, child)
    if node.joins:
        query = query.switch(model)
    loads = [
        peewee.Load(relation.accessor, _related(relation, child, strategy), strategy)
        for relation, child in node.loads
    ]
    return query.with_related(*load_tree(query), *loads) if loads else query


def _related(relation: Relation, node: _Node, strategy: int) -> Any:
    target = relation.target
    query = target.select()
    if relation.many:  # a stable order for the lists
        query = query.order_by(*_primary_key(target))
    return _shape(query, node, strategy)


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


def prepare(query: Any, schema: type[BaseModel], prefetch_type: int | None = None) -> Any:
    """``query`` with the joins and ``Load`` queries that ``schema`` needs."""
    query = as_query(query)
    if prefetch_type is None:
        limit = query_limit(query)
        small = limit is not None and limit <= MATERIALIZE_MAX
        prefetch_type = peewee.PREFETCH_TYPE.MATERIALIZE if small else peewee.PREFETCH_TYPE.WHERE
    return _shape(query, _plan(schema, query.model), prefetch_type)


# Keyed by the schema alone: a schema holds no model, database or query.
@functools.lru_cache(maxsize=128)
def _adapter(schema: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[schema])  # type: ignore[valid-type]


def validate(rows: list[Any], schema: type[S]) -> list[S]:
    """Validate loaded rows as ``schema`` instances, in one pass."""
    return _adapter(schema).validate_python(rows, from_attributes=True)


def not_found(query: Any) -> peewee.DoesNotExist:
    """The model's ``DoesNotExist``, worded as ``query.get()`` words it."""
    sql, params = query.sql()
    return query.model.DoesNotExist(  # type: ignore[no-any-return]
        f"{query.model.__name__} instance matching query does not exist:\n"
        f"SQL: {sql}\nParams: {params}"
    )
