"""Compiled queries: peewee builds a query's SQL once; later runs only bind new values.

Building SQL is the largest cost of a short query in peewee (``Query.sql()``
walks the whole node tree every time). A query written with :class:`Param`
placeholders compiles to a :class:`Template`: the SQL text plus, for each
parameter, either a constant or the placeholder it comes from and the
converter peewee would have applied to it. Binding values is a list copy.

Example::

    by_email = User.select().where(User.email == Param("email"))
    template = compile_query(db, by_email)
    sql, params = template.sql, template.bind({"email": "ann@example.com"})
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import operator
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import peewee

from ..contracts.peewee import MetaCache, meta_cache, store_meta_cache

__all__ = [
    "BoundedCache",
    "Param",
    "Template",
    "Uncompilable",
    "compile_query",
    "is_own_field",
    "model_cache",
    "model_fingerprint",
]

Converter = Callable[[Any], Any]
V = TypeVar("V")


class Uncompilable(ValueError):
    """The query cannot become a template (e.g. it inlines values as literals)."""


class _Slot:
    """Stands in a compiled parameter list where a :class:`Param` value goes."""

    __slots__ = ("converter", "name")

    def __init__(self, name: Hashable, converter: Converter | None) -> None:
        self.name = name
        self.converter = converter


class Param(peewee.Node):
    """A value supplied when a compiled query runs, not when it is built.

    ``converter`` is applied to the value at bind time; without one, the
    converter peewee would use at that place (e.g. ``field.db_value`` on the
    right of ``field == Param("x")``) is recorded at compile time.

    Example::

        query = User.select().where(User.id == Param("id"))
    """

    def __init__(self, name: Hashable, converter: Converter | None = None) -> None:
        super().__init__()
        self.name = name
        self.converter = converter

    def __sql__(self, ctx: Any) -> Any:
        if ctx.state.value_literals:
            raise Uncompilable("this query renders values as SQL literals")
        converter = self.converter
        if converter is None:
            converter = ctx.state.converter or None
        # converter=False: peewee must neither convert nor inspect our marker.
        return ctx.value(_Slot(self.name, converter), converter=False)


class Template:
    """The SQL of a compiled query and how to build its parameters from values."""

    __slots__ = ("_constants", "_slots", "sql")

    def __init__(self, sql: str, params: Sequence[Any]) -> None:
        self.sql = sql
        self._constants = [None if isinstance(p, _Slot) else p for p in params]
        self._slots = [
            (index, p.name, p.converter) for index, p in enumerate(params) if isinstance(p, _Slot)
        ]

    @property
    def names(self) -> list[Hashable]:
        """The placeholder names, in parameter order (a name may repeat)."""
        return [name for _, name, _ in self._slots]

    @property
    def has_constants(self) -> bool:
        """True when some parameters were fixed at build time rather than placeholders."""
        return len(self._slots) != len(self._constants)

    def bind(self, values: Mapping[Any, Any] | Sequence[Any]) -> list[Any] | None:
        """The parameters for ``values`` (by name, or by position for integer
        names); None when a value would change the SQL.

        peewee renders a node given as a value (``fn.NOW()``, a subquery) as
        SQL, so this template cannot serve it; nor a value whose conversion
        gives a node. A model instance for a foreign-key placeholder is
        converted to its key, as peewee's inserts and updates do.
        """
        params = self._constants.copy()
        for index, name, converter in self._slots:
            value = values[name]  # type: ignore[call-overload]
            if (
                type(value) not in _PLAIN
                and _renders_as_sql(value)
                and not _is_fk_instance(value, converter)
            ):
                return None
            if converter is not None:
                value = converter(value)
                if type(value) not in _PLAIN and _renders_as_sql(value):
                    return None
            params[index] = value
        return params


# Types whose values are never peewee nodes or models (exact types: a subclass may be).
_PLAIN = frozenset(
    {int, str, float, bool, bytes, type(None), decimal.Decimal, datetime.datetime,
     datetime.date, datetime.time, uuid.UUID}
)  # fmt: skip


def _renders_as_sql(value: Any) -> bool:
    return isinstance(value, peewee.Node) or (
        isinstance(value, type) and issubclass(value, peewee.Model)
    )


def _is_fk_instance(value: Any, converter: Converter | None) -> bool:
    field = getattr(converter, "__self__", None)
    return isinstance(value, peewee.Model) and isinstance(field, peewee.ForeignKeyField)


def compile_query(db: Any, query: Any) -> Template:
    """Build ``query``'s SQL once for database ``db``; raises :class:`Uncompilable`."""
    sql, params = db.get_sql_context().sql(query).query()
    return Template(sql, params)


def model_fingerprint(meta: Any) -> tuple[Any, ...]:
    """What the SQL built for a model depends on, besides its database: its table name,
    schema, primary key, and the identity and column name of every field."""
    fields = meta.sorted_fields
    return (
        meta.table_name,
        meta.schema,
        id(meta.primary_key),
        tuple(map(id, fields)),
        tuple(map(_COLUMN_NAME, fields)),
    )


_COLUMN_NAME = operator.attrgetter("column_name")


def is_own_field(node: Any, model: Any) -> bool:
    """A plain field of ``model`` itself (no alias, no other model's field)."""
    return (
        isinstance(node, peewee.Field)
        and not isinstance(node, peewee.FieldAlias)
        and node.model is model
    )


class BoundedCache(dict[Hashable, V]):
    """A dict of at most ``maxsize`` entries: a new entry beyond that drops the oldest.

    Lookups are plain ``dict.get``, with no bookkeeping on the hot path (an
    LRU's reordering costs more than the lookup); the bound is kept as the
    ``re`` module keeps its own: drop the oldest insertion, and let a race
    with another thread pass.
    """

    __slots__ = ("maxsize",)

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` for ``key``, dropping the oldest entry when full."""
        if key not in self and len(self) >= self.maxsize:
            with contextlib.suppress(StopIteration, RuntimeError, KeyError):
                del self[next(iter(self))]  # may race another thread's put: harmless
        self[key] = value


def model_cache(model: type[Any], name: MetaCache, maxsize: int) -> BoundedCache[Any]:
    """The cache ``name`` kept on ``model``'s own ``_meta``, made on first use.

    Kept on the model rather than in a module-level table keyed by it, so that
    entries may hold the model's fields and queries: the cache goes with the
    model, where a ``WeakKeyDictionary`` whose values refer to their key would
    keep the model alive for ever. How it is stored on peewee's ``Metadata``
    is :func:`fastpeewee.contracts.peewee.meta_cache`'s business.
    """
    meta = model._meta
    cache: BoundedCache[Any] | None = meta_cache(meta, name)
    if cache is None:
        cache = BoundedCache(maxsize)
        store_meta_cache(meta, name, cache)
    return cache
