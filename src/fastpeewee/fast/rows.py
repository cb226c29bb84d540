"""Faster model hydration for plain selects of one model.

peewee builds each row's object through ``Model(__no_default__=1, **row)``:
a dict per row, a ``setattr`` through a descriptor per column, then clearing
the dirty set. For a model that keeps peewee's own ``__init__`` and whose
selected columns are all plain fields, the result of that is fully known:
``__data__`` holds the converted values in the same order, and the dirty set
and related-object cache are empty. :class:`ModelRows` builds exactly that
directly (:func:`fastpeewee.contracts.peewee.new_instance`); any other case
keeps peewee's wrapper.

What peewee works out from the selected columns before the first row (their
names, fields and converters) is kept per select *shape*: the selected
fields, and for an expression, a function or an alias only what peewee
reads of it, never its values. ``User.select(User.id, (User.id + n).alias("x"))``
therefore shares one entry for every ``n``. At most :data:`LAYOUTS_MAX`
shapes are kept per model, on the model itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import peewee

from ..contracts.peewee import (
    STRING_FIELD,
    coerce_flag,
    converter_of,
    cursor_wrapper,
    entity_path,
    function_python_value,
    new_instance,
    one_model_columns,
)
from .compiled import BoundedCache, is_own_field, model_cache, model_fingerprint

__all__ = [
    "LAYOUTS_MAX",
    "NO_ROW",
    "ModelRows",
    "first_object",
    "kept_object",
    "layouts_of",
    "model_rows",
    "plain_model_columns",
]

_ACCESSORS = (peewee.FieldAccessor, peewee.ForeignKeyAccessor)
_SAME_PYTHON: dict[Any, type] = {
    peewee.IntegerField.adapt: int,
    peewee.FloatField.adapt: float,
    STRING_FIELD.adapt: str,
}


def _passthrough(field: Any, converter: Any) -> type | None:
    """The type whose values ``converter`` (a stock ``python_value``) returns unchanged."""
    if field is None or getattr(converter, "__self__", None) is not field:
        return None
    cls: Any = type(field)
    if getattr(converter, "__func__", None) is not peewee.Field.python_value:
        return None
    return _SAME_PYTHON.get(cls.adapt)


def _class_attr(model: type[Any], name: str) -> Any:
    """What ``name`` is on the class (``inspect.getattr_static`` for classes, quicker)."""
    for klass in model.__mro__:
        found = vars(klass).get(name)
        if found is not None:
            return found
    return None


def _plain_model(model: Any) -> bool:
    base: Any = peewee.Model
    return bool(
        model.__init__ is base.__init__
        and model.__setattr__ is base.__setattr__
        and model.__new__ is base.__new__
    )


LAYOUTS_MAX = 128
"""Select shapes whose layout is kept per model, the oldest dropped first (about
2.5 KB each: 0.3 MB a model at most)."""
_SAVED = ("columns", "fields", "converters", "no_convert", "convert", "unique_columns", "ncols")


def layouts_of(model: type[Any]) -> BoundedCache[_Layout]:
    """The layouts kept for ``model``, keyed by (select shape, result column names)."""
    return model_cache(model, "layouts", LAYOUTS_MAX)


class _Layout:
    """What peewee's ``initialize`` worked out for one select shape of one model, kept."""

    __slots__ = ("fields", "fingerprint", "values")

    def __init__(self, fingerprint: Any, fields: tuple[Any, ...], values: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.fields = fields  # held: the key's ids stay those of these fields
        self.values = values  # the wrapper's attributes after initialize()


class _Uncached(Exception):
    """The layout of this column depends on more than its shape (e.g. a converter)."""


def _column_key(raw: Any, model: Any, held: list[Any]) -> Hashable:
    """What peewee's ``_resolve_model_columns`` reads of one selected node, and the
    model's own fields it uses (appended to ``held``). A plain field is its id,
    so that a select of plain fields has the key ``tuple(map(id, select))``.

    Mirrors the branches of ``_resolve_model_columns`` (pinned by tests/contracts).
    """
    if is_own_field(raw, model):
        held.append(raw)
        return id(raw)
    if _kind(raw) == "value":
        raise _Uncached
    alias = raw.is_alias()
    node = raw.unwrap()
    kind = _kind(node)
    if kind == "field":
        if not is_own_field(node, model):
            raise _Uncached  # another model's field: not kept from this one
        held.append(node)
        return ("field", id(node), alias, bool(coerce_flag(raw)))
    if kind in _COLUMN_BASES and converter_of(raw):
        raise _Uncached  # the query's own converter
    if kind == "function" and coerce_flag(node):
        return ("function", alias, _function_key(raw, node, model, held))
    if kind in ("column", "value"):
        raise _Uncached  # a column's source decides; rare in a model select
    return ("other", alias, bool(coerce_flag(node)))


_COLUMN_BASES = frozenset({"function", "column", "expression"})


def _kind(node: Any) -> str:
    """The branch of peewee's column resolution that ``node``'s type leads to."""
    if isinstance(node, peewee.Field):
        return "field"
    if isinstance(node, peewee.Function):
        return "function"
    if isinstance(node, peewee.Column):
        return "column"
    if isinstance(node, peewee.ColumnBase):
        return "expression"
    return "node" if isinstance(node, peewee.Node) else "value"


def _function_key(raw: Any, node: Any, model: Any, held: list[Any]) -> Hashable:
    """Where peewee takes a function's converter from."""
    if coerce_flag(raw) is False:
        return "raw"
    if function_python_value(node) is not None:
        raise _Uncached
    arguments = node.arguments
    if not arguments or not isinstance(arguments[0], peewee.Node):
        return "none"
    first = arguments[0].unwrap()
    if isinstance(first, peewee.Entity):
        return ("named", entity_path(first)[-1])  # looked up by name among the model's fields
    if not isinstance(first, peewee.Field):
        return "none"
    if not is_own_field(first, model):
        raise _Uncached
    held.append(first)
    return ("field", id(first))


def _shape_key(select: Any, model: Any, held: list[Any]) -> Hashable | None:
    """The columns part of a layout key for ``select``, or None: not kept."""
    try:
        return tuple([_column_key(raw, model, held) for raw in select])
    except _Uncached:
        return None


class ModelRows(peewee.ModelObjectCursorWrapper):
    """``ModelObjectCursorWrapper`` building model objects without ``__init__``.

    ``kept``: an object whose ``layout`` attribute keeps, for one compiled
    statement (a plan, a prepared query), the result column names and what
    :meth:`initialize` worked out for them; the model's layout cache and
    fingerprint are then not consulted again for that statement.
    """

    _plan: list[tuple[str, int, Any, type | None]] | None = None
    _kept: Any = None

    def initialize(self) -> None:
        names = tuple([d[0] for d in self.cursor.description or ()])
        kept = self._kept
        if kept is not None:
            layout = kept.layout
            if layout is not None and layout[0] == names:
                vars(self).update(layout[1])
                return
            if self._initialize_from(names):
                kept.layout = (names, self.layout_values())
            return
        self._initialize_from(names)

    def _initialize_from(self, names: tuple[str, ...]) -> bool:
        """Work the layout out for result columns ``names`` (or take it from the
        model's cache); True when it depends on the select shape alone."""
        model = self.model
        select = self.select
        layouts = layouts_of(model)
        fingerprint = model_fingerprint(model._meta)
        # Plain fields first: their key is their ids, quick to build.
        layout = layouts.get((tuple(map(id, select)), names))
        if layout is None or layout.fingerprint != fingerprint:
            held: list[Any] = []
            shape = _shape_key(select, model, held)
            layout = None if shape is None else layouts.get((shape, names))
            if layout is None or layout.fingerprint != fingerprint:
                self._initialize()
                if shape is not None:
                    layout = _Layout(fingerprint, tuple(held), self.layout_values())
                    layouts.put((shape, names), layout)
                return shape is not None
        vars(self).update(layout.values)
        return True

    def layout_values(self) -> dict[str, Any]:
        """What :meth:`initialize` worked out, to be put back on another wrapper of
        the same select shape and result columns (``vars(w).update(...)``)."""
        return {name: getattr(self, name) for name in (*_SAVED, "_plan")}

    def _initialize(self) -> None:
        super().initialize()
        model = self.model
        plan = []
        for i in (*self.no_convert, *self.convert):  # peewee's assignment order
            name = self.unique_columns[i]
            if type(_class_attr(model, name)) not in _ACCESSORS:
                self._plan = None  # an alias or a property: peewee's setattr decides
                return
            converter = self.converters[i]
            plan.append((name, i, converter, _passthrough(self.fields[i], converter)))
        self._plan = plan

    def process_row(self, row: Any) -> Any:
        plan = self._plan
        if plan is None:
            return super().process_row(row)  # type: ignore[no-untyped-call]
        return _build(self.model, plan, row)

    def all_rows(self) -> list[Any]:
        """``list(self)``: every row, cached on the wrapper as iterating it caches them.

        On a wrapper not yet read, the rows are read in one loop instead of one
        ``ResultIterator.next`` and ``iterate`` call each; the wrapper is left as
        that iteration leaves it, a failing row included (mirrors
        ``CursorWrapper.iterate``, pinned by tests/contracts).
        """
        if self.populated or self.count:
            return list(self)  # read before: peewee's iteration goes on from there
        cursor = self.cursor
        fetchone = cursor.fetchone
        cache = self.row_cache
        row = fetchone()
        if row is not None:
            if not self.initialized:
                self.initialize()
                self.initialized = True
            plan = self._plan
            model = self.model
            process = self.process_row
            while row is not None:
                self.count += 1
                cache.append(process(row) if plan is None else _build(model, plan, row))
                row = fetchone()
        self.populated = True
        cursor.close()
        return list(cache)


def _build(model: Any, plan: list[tuple[str, int, Any, type | None]], row: Any) -> Any:
    """``row`` as a ``model`` object by a layout's row plan (:meth:`ModelRows.process_row`)."""
    data = {}
    for name, i, converter, same in plan:
        value = row[i]
        if converter is not None and not (
            same is not None and (value is None or type(value) is same)
        ):
            value = converter(value)
        data[name] = value
    return new_instance(model, data)


def model_rows(query: Any, cursor: Any, kept: Any = None) -> Any:
    """``query``'s cursor wrapper for ``cursor``: :class:`ModelRows` when it applies.

    ``kept``: see :class:`ModelRows` (the caller vouches that ``query`` is the
    select its statement was compiled from, or one of the same shape).
    """
    columns = plain_model_columns(query)
    if columns is not None:
        # What peewee's _get_model_cursor_wrapper would wrap, without building it
        # (a mirror, pinned by tests/contracts).
        wrapper = ModelRows(cursor, query.model, columns, query.model)
        if kept is not None:
            wrapper._kept = kept
        return wrapper
    wrapper = cursor_wrapper(query, cursor)
    if (
        type(wrapper) is peewee.ModelObjectCursorWrapper
        and wrapper.constructor is wrapper.model
        and _plain_model(wrapper.model)
    ):
        return ModelRows(cursor, wrapper.model, wrapper.select, wrapper.constructor)
    return wrapper


_MODEL_ROW = peewee.ROW.MODEL  # read once: ROW is an attrdict (a Python __getattr__)


def plain_model_columns(query: Any) -> Any:
    """The selected columns of a plain ``ModelSelect`` of one model, no joins, rows as
    objects of a plain model; None for any other query."""
    if type(query) is not peewee.ModelSelect:
        return None
    columns = one_model_columns(query)
    if columns is None or query.default_row_type != _MODEL_ROW or not _plain_model(query.model):
        return None
    return columns


def first_object(query: Any, cursor: Any, kept: Any = None) -> Any:
    """The first row of ``cursor`` as ``query`` would wrap it, or :data:`NO_ROW`.

    What iterating the cursor wrapper gives first, without its row cache.
    """
    row = cursor.fetchone()
    if row is None:
        return NO_ROW
    if kept is not None and plain_model_columns(query) is not None:
        found = kept_object(query.model, kept, cursor, row)
        if found is not NO_ROW:
            return found
    wrapper = model_rows(query, cursor, kept)
    wrapper.initialize()
    return wrapper.process_row(row)


def kept_object(model: Any, kept: Any, cursor: Any, row: Any) -> Any:
    """``row`` of ``cursor`` as a ``model`` object, built by the layout ``kept`` keeps
    (see :class:`ModelRows`) without a cursor wrapper; :data:`NO_ROW` when none
    is kept for the cursor's result columns, or when peewee's setattr builds
    the rows.

    The caller vouches that the statement was compiled from a plain select of
    ``model`` whose rows are model objects (:func:`plain_model_columns`), as
    :class:`ModelRows` would have been given.
    """
    layout = kept.layout
    if layout is None:
        return NO_ROW
    plan = layout[1]["_plan"]
    if plan is None or layout[0] != tuple([d[0] for d in cursor.description or ()]):
        return NO_ROW
    return _build(model, plan, row)


NO_ROW: Any = object()
"""Returned by :func:`first_object` for an empty result."""
