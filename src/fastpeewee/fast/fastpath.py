"""Native async fast paths for the hottest model calls, on compiled SQL.

``aget_by_id``, ``acreate`` and ``asave`` of a plain model run here: the SQL
peewee would build is compiled once per (model, database, operation shape)
and reused with new values, and the statement is awaited directly, without
the greenlet bridge. Everything else about the call is peewee's own: the
same query objects hydrate rows, the same dirty-field bookkeeping runs.

A plan is only reused on the database it was built for and while the model's
fingerprint is unchanged: its table name, schema, primary key and the
identity and column name of every field. Adding, removing or renaming a
field, renaming the table or binding the model to another database
therefore compiles afresh. Plans are kept on the model itself, at most
:data:`PLANS_MAX` of them, and refer to their database only weakly: a
database object no longer used is freed, whatever was compiled for it. A model
that overrides one of the peewee methods a fast path replaces (``save``,
``get_by_id``, ``select``, ...) always takes the ordinary path, so hooks such
as ``playhouse.signals`` keep firing.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

import peewee

from ..contracts.peewee import (
    PK_EXPR_METHOD,
    SAVE_STEP_METHODS,
    coerce_flag,
    cursor_wrapper,
    dirty_names,
    get_pk,
    meta_cache,
    pk_expr,
    plain_insert_result,
    populate_unsaved_relations,
    prepare_insert,
    prune_fields,
    returning,
    set_pk,
)
from .compiled import (
    BoundedCache,
    Param,
    Template,
    Uncompilable,
    compile_query,
    model_cache,
    model_fingerprint,
)
from .rows import model_rows

__all__ = [
    "MISSING",
    "PLANS_MAX",
    "Plan",
    "can_create",
    "can_save",
    "get_by_id",
    "plan_for",
    "plans_of",
    "save",
]

_UNSAFE_KEYS = (peewee.Node, list, tuple, set, frozenset, dict)
_PK = ("fastpeewee", "pk")  # the primary key's placeholder name: no field can have it


class Plan:
    """A compiled statement for one operation of one model, and the query it came from.

    The query is unbound from its database: the plan lives as long as the
    model, which may outlive the database.
    """

    __slots__ = (
        "checked",
        "database",
        "fingerprint",
        "layout",
        "pk_converter",
        "query",
        "template",
    )

    def __init__(
        self, db: Any, fingerprint: tuple[Any, ...], query: Any, template: Template | None
    ) -> None:
        self.database = weakref.ref(db)
        self.fingerprint = fingerprint
        self.query: Any = None if query is None else query.bind(None)
        self.template = template
        self.checked = False  # compared once with peewee's own SQL (where a caller does)
        # Inserts returning just the primary key: how to read it (see _run_insert).
        self.pk_converter: Any = None
        # Selects: the result columns and how rows are built (fast.rows.ModelRows).
        self.layout: Any = None


PLANS_MAX = 256
"""Plans kept per model, the oldest dropped first: one per operation shape (get by
id, insert or update of a set of fields, select shape) and database. A plan is
about 3 KB, so a model's plans never take more than about 0.75 MB."""


def plans_of(model: type[Any]) -> BoundedCache[Plan]:
    """The plans kept for ``model``, keyed by (operation and shape, database id)."""
    return model_cache(model, "plans", PLANS_MAX)


def plain_pk(model: type[Any]) -> Any:
    """The model's single-column primary key field, or None (composite or no key)."""
    pk = model._meta.primary_key
    if pk is False or isinstance(pk, peewee.CompositeKey):
        return None
    return pk


def overrides(model: type[Any], *names: str) -> bool:
    """True when ``model`` replaces any of peewee's ``Model`` methods ``names``.

    Looked up afresh at every call (no cache), so a method patched at run time
    on the model or any of its bases is noticed at once.
    """
    base = _MODEL_DICT
    for name in names:
        attr = base[name]
        mine = getattr(model, name)
        if getattr(mine, "__func__", mine) is not getattr(attr, "__func__", attr):
            return True
    return False


_MODEL_DICT = peewee.Model.__dict__  # a live view: patches of peewee.Model show through
_SAVE_NAMES = ("save", *SAVE_STEP_METHODS, "insert", "update")
_CREATE_NAMES = ("create", *_SAVE_NAMES)


def plan_for(
    model: type[Any], db: Any, key: Hashable, build: Callable[[], Any], constants: bool = False
) -> Plan | None:
    """The cached plan ``key`` of ``model`` on ``db``, built and compiled on first use.

    ``constants``: allow parameters fixed at build time (else such a query,
    e.g. an insert that filled in a column default, is not cached).
    Returns None when the query cannot be compiled; the caller then takes
    peewee's ordinary path.
    """
    meta = model._meta
    fingerprint = model_fingerprint(meta)
    plans = meta_cache(meta, "plans")  # plans_of(), inline: this is a hot path
    if plans is None:
        plans = plans_of(model)
    full_key = (key, id(db))
    plan = plans.get(full_key)
    # The id of a database that was freed may be reused: check it is this one.
    if plan is None or plan.database() is not db or plan.fingerprint != fingerprint:
        plan = _compile(fingerprint, db, build, constants)
        plans.put(full_key, plan)
    return plan if plan.template is not None else None


def _compile(
    fingerprint: tuple[Any, ...], db: Any, build: Callable[[], Any], constants: bool
) -> Plan:
    try:
        query = build()
        template: Template | None = compile_query(db, query)
    except (Uncompilable, peewee.PeeweeException, KeyError, ValueError, TypeError):
        return Plan(db, fingerprint, None, None)  # remembered: not compilable
    if template is not None and template.has_constants and not constants:
        template = None
    return Plan(db, fingerprint, query, template)


# -- the operations ------------------------------------------------------------


def get_by_id_plan(model: type[Any], db: Any, pk_value: Any) -> Plan | None:
    """Plan for ``Model.get_by_id(pk)``: ``select().where(pk == ?).paginate(1, 1)``."""
    if pk_value is None or isinstance(pk_value, _UNSAFE_KEYS):
        return None  # `pk == None` renders IS NULL; nodes and lists render as SQL
    pk = plain_pk(model)
    if pk is None or overrides(model, "get_by_id", "get", "select"):
        return None

    def build() -> Any:
        return model.select().where(pk == Param("pk")).paginate(1, 1)

    return plan_for(model, db, "get_by_id", build, constants=True)


def _values_ok(model: type[Any], field_dict: dict[str, Any]) -> bool:
    fields = model._meta.fields
    for name, value in field_dict.items():
        # A model instance for a foreign key converts to its key; any other
        # node is rendered as SQL: peewee's path handles those.
        if isinstance(value, peewee.Node) and not (
            isinstance(value, peewee.Model)
            and isinstance(fields.get(name), peewee.ForeignKeyField)
        ):
            return False
    return True


def insert_plan(
    model: type[Any], db: Any, field_dict: dict[str, Any], checked: bool = False
) -> Plan | None:
    """Plan for ``Model.insert(**field_dict).execute()`` (as ``save`` sends it).

    ``checked``: the caller already made sure ``insert`` is peewee's own
    (:func:`can_save` did).
    """
    if not field_dict or not _values_ok(model, field_dict):
        return None
    if not checked and overrides(model, "insert"):
        return None
    names = tuple(field_dict)
    fields = model._meta.fields

    def build() -> Any:
        data = {name: Param(name, fields[name].db_value) for name in names}
        return prepare_insert(model.insert(**data), db)

    plan = plan_for(model, db, ("insert", names), build)
    if plan is not None and not plan.checked:
        plan.pk_converter = _returned_pk_converter(model, db, plan.query)
        plan.checked = True
    return plan


def _returned_pk_converter(model: type[Any], db: Any, query: Any) -> Any:
    """``pk.python_value`` (or ``_identity``) when the insert returns exactly the
    primary key the way peewee reads one back; None: use peewee's wrapper.

    Mirrors ``Insert.handle_result`` and ``Database.last_insert_id`` (pinned by
    tests/contracts): a single-row insert's result is the first row's first value.
    """
    key = plain_pk(model)
    returned = returning(query)
    if key is None or not returned or len(returned) != 1 or returned[0] is not key:
        return None
    if not plain_insert_result(query) or not db.returning_clause:
        return None
    if type(db).last_insert_id is not peewee.Database.last_insert_id:
        return None
    if query.default_row_type != peewee.ROW.TUPLE:
        return None
    return key.python_value if coerce_flag(key) else _identity


def _identity(value: Any) -> Any:
    return value


def update_plan(
    model: type[Any], db: Any, field_dict: dict[str, Any], checked: bool = False
) -> Plan | None:
    """Plan for ``self.update(**field_dict).where(<pk> == <value>)`` (as ``save`` sends it).

    ``checked``: the caller already made sure ``update`` is peewee's own
    (:func:`can_save` did); ``_pk_expr`` is checked here either way.
    """
    pk = plain_pk(model)
    if pk is None or not field_dict or not _values_ok(model, field_dict):
        return None
    if overrides(model, PK_EXPR_METHOD) if checked else overrides(model, "update", PK_EXPR_METHOD):
        return None
    names = tuple(field_dict)
    fields = model._meta.fields
    for name in names:
        # peewee converts update values with Field.to_value; a field that
        # overrides it may render differently.
        if type(fields[name]).to_value is not peewee.Field.to_value:
            return None

    def build() -> Any:
        data = {name: Param(name, fields[name].db_value) for name in names}
        return model.update(**data).where(pk == Param(_PK))

    return plan_for(model, db, ("update", names), build)


# -- running them ----------------------------------------------------------------

MISSING: Any = object()
_MISSING = MISSING


async def get_by_id(model: type[Any], db: Any, pk_value: Any) -> Any:
    """``Model.get_by_id(pk)`` on compiled SQL, or ``_MISSING`` when it does not apply."""
    plan = get_by_id_plan(model, db, pk_value)
    if plan is None:
        return _MISSING
    template = plan.template
    assert template is not None
    params = template.bind({"pk": pk_value})
    if params is None:
        return _MISSING
    cursor = await db.aexecute_sql(template.sql, params)
    try:
        return model_rows(plan.query, cursor, plan)[0]
    except IndexError:
        raise model.DoesNotExist(
            f"{model} instance matching query does not exist:\n"
            f"SQL: {template.sql}\nParams: {params}"
        ) from None


def _bind(plan: Plan | None, values: dict[Any, Any]) -> tuple[str, list[Any]] | None:
    if plan is None or plan.template is None:
        return None
    params = plan.template.bind(values)
    return None if params is None else (plan.template.sql, params)


async def _run_insert(inst: Any, db: Any, field_dict: dict[str, Any]) -> Any:
    plan = insert_plan(type(inst), db, field_dict, True)  # save: can_save checked
    bound = _bind(plan, field_dict)
    if plan is None or bound is None:
        return await db.run(lambda: inst.insert(**field_dict).execute())
    query = plan.query
    cursor = await db.aexecute_sql(*bound)
    if plan.pk_converter is not None:
        # What peewee's tuple wrapper and last_insert_id() make of the one
        # RETURNING column: the first row's key, through python_value.
        row = cursor.fetchone()
        return None if row is None else plan.pk_converter(row[0])
    if returning(query):
        cursor = cursor_wrapper(query, cursor)
    return query.handle_result(db, cursor)


async def _run_update(inst: Any, db: Any, field_dict: dict[str, Any]) -> Any:
    plan = update_plan(type(inst), db, field_dict, True)  # save: can_save checked
    bound = _bind(plan, {**field_dict, _PK: get_pk(inst)})
    if plan is None or bound is None:
        return await db.run(lambda: inst.update(**field_dict).where(pk_expr(inst)).execute())
    cursor = await db.aexecute_sql(*bound)
    return plan.query.handle_result(db, cursor)


def can_save(model: type[Any]) -> bool:
    """True when ``save`` is peewee's own, so :func:`save` may stand in for it."""
    return not overrides(model, *_SAVE_NAMES)


def can_create(model: type[Any]) -> bool:
    """True when ``create`` and ``save`` are peewee's own: ``acreate`` may build the
    instance and run :func:`save` (one pass over the methods, not two)."""
    return not overrides(model, *_CREATE_NAMES)


async def save(inst: Any, db: Any, force_insert: bool, only: Any) -> Any:
    """``Model.save`` step for step (peewee 4.5), its two statements on compiled SQL.

    A mirror of ``Model.save``, pinned by tests/contracts (``contracts.peewee.MIRRORS``):
    re-check it whenever that test fails. Only for a model :func:`can_save` accepts:
    peewee's own ``_prune_fields`` and ``_populate_unsaved_relations`` run directly.
    """
    meta = inst._meta
    field_dict = inst.__data__.copy()
    dirty = dirty_names(inst)  # one set for the instance's life: peewee only mutates it
    if meta.primary_key is not False:
        pk_field = meta.primary_key
        pk_value = get_pk(inst)
    else:
        pk_field = pk_value = None
    if only is not None:
        field_dict = prune_fields(inst, field_dict, only)
    elif meta.only_save_dirty and not force_insert:
        field_dict = prune_fields(inst, field_dict, inst.dirty_fields)
        if not field_dict:
            dirty.clear()
            return False

    populate_unsaved_relations(inst, field_dict)
    rows = 1

    if meta.auto_increment and pk_value is None:
        field_dict.pop(pk_field.name, None)

    if pk_value is not None and not force_insert:
        if meta.composite_key:
            for pk_part_name in pk_field.field_names:
                field_dict.pop(pk_part_name, None)
        else:
            field_dict.pop(pk_field.name, None)
        if not field_dict:
            raise ValueError("no data to save!")
        rows = await _run_update(inst, db, field_dict)
    elif pk_field is not None:
        new_pk = await _run_insert(inst, db, field_dict)
        if new_pk is not None and (meta.auto_increment or pk_value is None):
            set_pk(inst, new_pk)
            # Although we set the primary-key, do not mark it as dirty.
            dirty.discard(pk_field.name)
    else:
        await _run_insert(inst, db, field_dict)

    dirty -= set(field_dict)  # Remove any fields we saved (in place: the instance's set).
    return rows
