"""Faster model hydration for plain selects of one model.

peewee builds each row's object through ``Model(__no_default__=1, **row)``:
a dict per row, a ``setattr`` through a descriptor per column, then clearing
the dirty set. For a model that keeps peewee's own ``__init__`` and whose
selected columns are all plain fields, the result of that is fully known:
``__data__`` holds the converted values in the same order, ``_dirty`` is
empty and ``__rel__`` is empty. :class:`ModelRows` builds exactly that
directly; any other case keeps peewee's wrapper.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

import peewee

from .compiled import model_fingerprint

__all__ = ["NO_ROW", "ModelRows", "first_object", "model_rows"]

_ACCESSORS = (peewee.FieldAccessor, peewee.ForeignKeyAccessor)
_SAME_PYTHON: dict[Any, type] = {
    peewee.IntegerField.adapt: int,
    peewee.FloatField.adapt: float,
    vars(peewee)["_StringField"].adapt: str,
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


# model -> {(selected node ids, result column names): _Layout}
_LAYOUTS: weakref.WeakKeyDictionary[type, dict[Any, _Layout]] = weakref.WeakKeyDictionary()
_SAVED = ("columns", "fields", "converters", "no_convert", "convert", "unique_columns", "ncols")


class _Layout:
    """What peewee's ``initialize`` worked out for one select of one model, kept."""

    __slots__ = ("fingerprint", "select", "values")

    def __init__(self, fingerprint: Any, select: Any, values: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.select = select  # held: the key's ids stay those of these nodes
        self.values = values  # the wrapper's attributes after initialize()


class ModelRows(peewee.ModelObjectCursorWrapper):
    """``ModelObjectCursorWrapper`` building model objects without ``__init__``."""

    _plan: list[tuple[str, int, Any, type | None]] | None = None

    def initialize(self) -> None:
        model = self.model
        select = tuple(self.select)
        description = self.cursor.description
        key = (tuple(map(id, select)), tuple([d[0] for d in description or ()]))
        layouts = _LAYOUTS.get(model)
        if layouts is None:
            layouts = _LAYOUTS.setdefault(model, {})
        fingerprint = model_fingerprint(model._meta, None)
        layout = layouts.get(key)
        if (
            layout is not None
            and layout.fingerprint == fingerprint
            and all(map(operator.is_, layout.select, select))
        ):
            vars(self).update(layout.values)
            return
        self._initialize()
        values = {name: getattr(self, name) for name in (*_SAVED, "_plan")}
        layouts[key] = _Layout(fingerprint, select, values)

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
        data = {}
        for name, i, converter, same in plan:
            value = row[i]
            if converter is not None and not (
                same is not None and (value is None or type(value) is same)
            ):
                value = converter(value)
            data[name] = value
        obj = object.__new__(self.model)
        obj.__data__ = data
        obj._dirty = set()
        obj.__rel__ = {}
        return obj


def model_rows(query: Any, cursor: Any) -> Any:
    """``query``'s cursor wrapper for ``cursor``: :class:`ModelRows` when it applies."""
    if _one_plain_model(query):
        # What peewee's _get_model_cursor_wrapper would wrap, without building it.
        return ModelRows(cursor, query.model, query._returning, query.model)
    wrapper = query._get_cursor_wrapper(cursor)
    if (
        type(wrapper) is peewee.ModelObjectCursorWrapper
        and wrapper.constructor is wrapper.model
        and _plain_model(wrapper.model)
    ):
        return ModelRows(cursor, wrapper.model, wrapper.select, wrapper.constructor)
    return wrapper


def _one_plain_model(query: Any) -> bool:
    """A plain ``ModelSelect`` of one model, no joins, rows as objects of a plain model."""
    if type(query) is not peewee.ModelSelect:
        return False
    attrs = vars(query)
    return bool(
        attrs["_row_type"] is None
        and query.default_row_type == peewee.ROW.MODEL
        and len(attrs["_from_list"]) == 1
        and not attrs["_joins"]
        and _plain_model(query.model)
    )


def first_object(query: Any, cursor: Any) -> Any:
    """The first row of ``cursor`` as ``query`` would wrap it, or :data:`NO_ROW`.

    What iterating the cursor wrapper gives first, without its row cache.
    """
    row = cursor.fetchone()
    if row is None:
        return NO_ROW
    wrapper = model_rows(query, cursor)
    wrapper.initialize()
    return wrapper.process_row(row)


NO_ROW: Any = object()
"""Returned by :func:`first_object` for an empty result."""
