"""Multi-row inserts of any size: batches under the driver's parameter cap, or COPY.

``Model.insert_many(rows).execute()`` (and ``bulk_create``) builds one INSERT
with a parameter per value; asyncpg refuses more than 32,767 parameters in a
statement and SQLite more than its variable limit. Here such an insert is
split into batches that each fit, run inside one transaction (a savepoint
when one is open) so the insert stays all-or-nothing, and their results are
merged into the one cursor peewee expects.

On PostgreSQL from async code a plain multi-row model insert (no ON
CONFLICT, no explicit ``returning()``, plain Python values) goes through
binary ``COPY`` instead. The primary keys the INSERT would have returned are
drawn from the column's sequence first, so the result is the same: a cursor
of ``(id,)`` rows in input order, and ``bulk_create`` still sets each
object's id. The rows are converted exactly as peewee converts them; the
first two are checked against peewee's own SQL parameters before COPY runs,
and anything unusual takes peewee's ordinary INSERT path.
"""

from __future__ import annotations

import datetime
import decimal
import operator
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import peewee

from ..contracts.peewee import (
    STRING_FIELD,
    insert_columns,
    insert_rows,
    on_conflict,
    returning,
    returns_cursor,
    set_insert_rows,
    sort_key,
)
from ..cursor import Cursor

__all__ = ["execute_insert", "is_multi_insert", "quote_name"]

_PLAIN = frozenset(
    {
        int,
        float,
        str,
        bool,
        type(None),
        bytes,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
    }
)
_ABSENT = object()


def is_multi_insert(query: Any) -> bool:
    """True for ``insert_many``-style inserts (rows), not single rows or INSERT ... SELECT."""
    if not isinstance(query, peewee.Insert):
        return False
    rows = insert_rows(query)
    return rows is not None and not isinstance(rows, (Mapping, peewee.Node))


def execute_insert(db: Any, query: Any, options: dict[str, Any]) -> Cursor | None:
    """Run a multi-row insert by COPY or in batches; None: peewee's single statement will do."""
    rows = insert_rows(query)
    if not isinstance(rows, list):
        rows = list(rows)  # a generator is read once: keep its rows
        set_insert_rows(query, rows)
    if len(rows) < 2:
        return None
    if db._copy_supported():
        copied = _try_copy(db, query, rows, options)
        if copied is not None:
            return copied
    if db._executemany_supported():
        done = _try_executemany(db, query, rows, options)
        if done is not None:
            return done
    return _batched(db, query, rows, options)


# -- batches -------------------------------------------------------------------


def _with_rows(query: Any, rows: list[Any]) -> Any:
    clone = query.clone()
    set_insert_rows(clone, rows)
    return clone


def _render(db: Any, query: Any, options: dict[str, Any]) -> tuple[str, list[Any]]:
    sql, params = db.get_sql_context(**options).sql(query).query()
    return sql, params


def _batched(db: Any, query: Any, rows: list[Any], options: dict[str, Any]) -> Cursor | None:
    limit = db.max_query_params
    bound = _params_per_row_bound(query, rows[0])
    if bound is not None and bound * len(rows) <= limit:
        return None  # fits in one statement
    one = len(_render(db, _with_rows(query, rows[:1]), options)[1])
    per_row = len(_render(db, _with_rows(query, rows[:2]), options)[1]) - one
    fixed = one - per_row
    if per_row <= 0 or fixed + per_row * len(rows) <= limit:
        return None
    size = max(1, (limit - fixed) // per_row)
    cursors = []
    with db.atomic():
        for start in range(0, len(rows), size):
            sql, params = _render(db, _with_rows(query, rows[start : start + size]), options)
            cursors.append(db.execute_sql(sql, params))
    return _merge(cursors, first_id=isinstance(db, peewee.MySQLDatabase))


def _params_per_row_bound(query: Any, first: Any) -> int | None:
    """Most parameters one row can take, or None when it cannot be told cheaply."""
    if on_conflict(query) is not None:
        return None
    values = first.values() if isinstance(first, Mapping) else first
    if any(isinstance(v, peewee.Node) for v in values):
        return None  # a subquery as a value brings its own parameters
    columns = insert_columns(query)
    width = len(columns) if columns else len(first)
    return width + len(query.get_default_data() or ())


def _merge(cursors: list[Cursor], first_id: bool = False) -> Cursor:
    """One cursor for the batches, as the single statement would have given.

    ``lastrowid`` is the last batch's (SQLite: the last row), or with
    ``first_id`` the first batch's (MySQL: the first row of the statement).
    """
    rows: list[Any] = []
    count = 0
    for cursor in cursors:
        rows.extend(cursor.fetchall())
        count = -1 if count < 0 or cursor.rowcount < 0 else count + cursor.rowcount
    description = next((c.description for c in cursors if c.description), None)
    last = cursors[0] if first_id else cursors[-1]
    return Cursor(rows, count, last.lastrowid, description)


# -- COPY ----------------------------------------------------------------------


def _try_copy(db: Any, query: Any, rows: list[Any], options: dict[str, Any]) -> Cursor | None:
    if not _is_model_insert(query) or options:
        return None
    if on_conflict(query) is not None or returns_cursor(query):
        return None
    model = query.model
    meta = model._meta
    pk = meta.primary_key
    returned = returning(query)
    if returned and (len(returned) != 1 or returned[0] is not pk):
        return None
    extracted = _extract(query, rows)
    if extracted is None:
        return None
    columns, records, checked = extracted
    if not _agrees_with_peewee(db, query, rows, columns, records, checked, options):
        return None
    names = [c.column_name for c in columns]
    ids: list[Any] | None = None
    copied: Iterable[tuple[Any, ...]] = records
    if returned:
        positions = [i for i, c in enumerate(columns) if c is pk]  # `in` would build SQL
        if positions:
            ids = [record[positions[0]] for record in records]
        elif meta.auto_increment:
            ids = db._reserve_ids(meta.table_name, meta.schema, pk.column_name, len(records))
            if ids is None:
                return None
            names.insert(0, pk.column_name)
            copied = _WithIds(ids, records)
        else:
            return None
    count = db._copy(meta.table_name, meta.schema, names, copied)
    if ids is None:
        return Cursor((), count)
    return Cursor(_IdRows(ids), count, None, [(pk.column_name,)])


# Thousands of rows are built here: the two classes below make their tuples
# only as they are read, so they never pile up for the garbage collector.


class _WithIds:
    """``records`` with each one's id in front, built as COPY reads them."""

    __slots__ = ("_ids", "_records")

    def __init__(self, ids: list[Any], records: Sequence[tuple[Any, ...]]) -> None:
        self._ids = ids
        self._records = records

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        if isinstance(self._records, _Columns):  # at C speed, one tuple reused
            return zip(self._ids, *self._records.columns, strict=True)
        return ((i, *r) for i, r in zip(self._ids, self._records, strict=True))


class _IdRows(Sequence[tuple[Any]]):
    """The ``(id,)`` rows RETURNING would have given, made on demand."""

    __slots__ = ("_ids",)

    def __init__(self, ids: list[Any]) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [(i,) for i in self._ids[index]]
        return (self._ids[index],)


def _try_executemany(
    db: Any, query: Any, rows: list[Any], options: dict[str, Any]
) -> Cursor | None:
    """The driver's executemany, all-or-nothing like peewee's one multi-row INSERT.

    SQLite runs the single-row INSERT for every row; MySQL's drivers rewrite it
    into multi-row INSERTs themselves (escaping at C speed in asyncmy). The
    cursor carries the row count and the row id peewee's statement would give
    (SQLite: the last row's; MySQL: the first generated one).
    """
    if not _is_model_insert(query) or options or on_conflict(query) is not None:
        return None
    if returning(query):
        return None  # rows to return: peewee's (batched) statement gives them
    extracted = _extract(query, rows)
    if extracted is None:
        return None
    columns, records, varying = extracted
    meta = query.model._meta
    mysql = isinstance(db, peewee.MySQLDatabase)
    if mysql and meta.auto_increment and any(c is meta.primary_key for c in columns):
        # Explicit ids: MySQL's insert id is then the last row's, of the
        # statement the rows landed in, which is peewee's single one only.
        return None
    sql, params = _render(db, _with_rows(query, rows[:1]), options)
    if not _matches(db, sql, params, columns, records[:1], varying):
        return None
    cursor: Cursor = db._executemany(sql, records)
    return cursor


def _is_model_insert(query: Any) -> bool:
    return isinstance(query, peewee.ModelInsert)


def quote_name(db: Any, *parts: str | None) -> str:
    """``schema.table`` (or a column) quoted as ``db`` quotes identifiers."""
    entity = peewee.Entity(*[p for p in parts if p])
    sql: str = db.get_sql_context().sql(entity).query()[0]
    return sql


def _columns_of(query: Any, first: Any) -> list[Any] | None:
    """The insert's columns, resolved and ordered as peewee's ``_generate_insert`` does.

    A mirror of ``Insert._generate_insert``'s column logic, pinned by tests/contracts
    (``contracts.peewee.MIRRORS``).
    """
    defaults = query.get_default_data() or {}
    given = insert_columns(query)
    if given:
        columns = [getattr(query.table, c) if isinstance(c, str) else c for c in given]
        seen = set(columns)
        extra = [c for c in defaults if c not in seen]
        if not all(isinstance(c, peewee.Field) for c in (*columns, *extra)):
            return None
        columns.extend(sorted(extra, key=sort_key))
        return columns
    if not isinstance(first, Mapping):
        found = query.get_default_columns()
        return list(found) if found is not None else None
    accum = [getattr(query.table, c) if isinstance(c, str) else c for c in first]
    present = set(accum)
    accum.extend(c for c in set(defaults) - present)
    if not all(isinstance(c, peewee.Field) for c in accum):
        return None
    return sorted(accum, key=sort_key)


def _passthrough(field: Any) -> type | None:
    """The Python type whose values ``field.db_value`` returns unchanged, if known."""
    cls = type(field)
    if cls.db_value is not peewee.Field.db_value:
        return None
    return _UNCHANGED.get(cls.adapt)


_UNCHANGED: dict[Any, type] = {
    peewee.IntegerField.adapt: int,
    peewee.FloatField.adapt: float,
    STRING_FIELD.adapt: str,
}
_STR_KEYS = frozenset({str})


def _extract(
    query: Any, rows: list[Any]
) -> tuple[list[Any], Sequence[tuple[Any, ...]], list[bool]] | None:
    """Columns, converted records, and which columns may differ from peewee's
    values (callable defaults); None when a row needs peewee itself."""
    columns = _columns_of(query, rows[0])
    if not columns or len(set(columns)) != len(columns):
        return None
    defaults = query.get_default_data() or {}
    specs = []
    for index, column in enumerate(columns):
        alt = column.column_name if column.name != column.column_name else None
        fk = isinstance(column, peewee.ForeignKeyField)
        specs.append((index, column, alt, column.db_value, _passthrough(column), fk))
    varying = [callable(defaults.get(c)) for c in columns]
    uniform = _extract_uniform(rows, specs)
    if uniform is not None:
        return columns, uniform, varying
    records = []
    for row in rows:
        # A dict keyed by names only cannot hold the field object itself, the
        # first key peewee tries: look names up directly.
        by_name = type(row) is dict and set(map(type, row)) <= _STR_KEYS
        record = _convert(row, specs, defaults, by_name)
        if record is None:
            return None
        records.append(record)
    return columns, records, varying


def _extract_uniform(rows: list[Any], specs: list[Any]) -> _Columns | None:
    """The records of the common case at C speed, or None to convert row by row.

    The case: every row a plain ``dict`` with the same string keys, one per
    column, and every value of a type the column's ``db_value`` passes
    through unchanged (or None), so a record is just the row's values in
    column order, exactly what ``_convert`` would build. The values are read
    now, a list per column (no tuple per row), and zipped into records as
    the driver reads them.
    """
    first = rows[0]
    if type(first) is not dict or len(first) != len(specs):
        return None
    keys = first.keys()
    names = []
    for _index, column, alt, _converter, same, _fk in specs:
        if same is None:
            return None
        if column.name in keys:
            names.append(column.name)
        elif alt is not None and alt in keys:
            names.append(alt)
        else:
            return None
    # Every row a dict of as many keys as the first, each holding all the
    # (distinct) names, itemgetter raising otherwise: the first's keys.
    if len(set(names)) != len(first):
        return None
    if set(map(type, rows)) != {dict} or set(map(len, rows)) != {len(first)}:
        return None
    columns = []
    for spec, name in zip(specs, names, strict=True):
        try:
            values = list(map(operator.itemgetter(name), rows))
        except KeyError:
            return None
        if not set(map(type, values)) <= {spec[4], _NONE_TYPE}:
            return None
        columns.append(values)
    return _Columns(columns, len(rows))


class _Columns(Sequence[tuple[Any, ...]]):
    """Records kept as one list of values per column, zipped into tuples as read.

    Iterating again starts over (a retried statement reads them all again);
    ``zip`` hands a driver that drops each record before the next the same
    tuple back, so thousands of records cost no allocations, nor the garbage
    collector's passes over them.
    """

    __slots__ = ("_count", "columns")

    def __init__(self, columns: list[list[Any]], count: int) -> None:
        self.columns = columns
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns, strict=True)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(zip(*[c[index] for c in self.columns], strict=True))
        return tuple(c[index] for c in self.columns)


_NONE_TYPE = type(None)


def _convert(
    row: Any, specs: list[Any], defaults: dict[Any, Any], by_name: bool
) -> tuple[Any, ...] | None:
    is_dict = by_name or isinstance(row, Mapping)
    values = []
    for index, column, alt, converter, same, fk in specs:
        value: Any = _ABSENT
        if by_name:
            value = row.get(column.name, _ABSENT)
            if value is _ABSENT and alt is not None:
                value = row.get(alt, _ABSENT)
        elif is_dict:
            value = _lookup(row, column, alt)
        elif index < len(row):
            value = row[index]
        if same is not None and (value is None or type(value) is same):
            values.append(value)  # peewee's db_value would return it unchanged
            continue
        if value is _ABSENT:
            value = _missing(column, defaults)
            if value is _ABSENT:
                return None  # peewee raises "Missing value for ...": let it
        if isinstance(value, peewee.Node) and not (fk and isinstance(value, peewee.Model)):
            return None
        value = converter(value)
        if type(value) not in _PLAIN:
            return None
        values.append(value)
    return tuple(values)


def _lookup(row: Any, column: Any, alt: str | None) -> Any:
    """``row[column]``, else by name, else by column name: peewee's order."""
    for key in (column, column.name, alt):
        if key is None:
            continue
        try:
            return row[key]
        except KeyError:
            pass
    return _ABSENT


def _missing(column: Any, defaults: dict[Any, Any]) -> Any:
    if column in defaults:
        value = defaults[column]
        return value() if callable(value) else value
    return None if column.null else _ABSENT


def _agrees_with_peewee(
    db: Any,
    query: Any,
    rows: list[Any],
    columns: list[Any],
    records: Sequence[tuple[Any, ...]],
    varying: list[bool],
    options: dict[str, Any],
) -> bool:
    """Check the first two rows against the SQL and parameters peewee builds for them."""
    sql, params = _render(db, _with_rows(query, rows[:2]), options)
    return _matches(db, sql, params, columns, records[:2], varying)


def _matches(
    db: Any,
    sql: str,
    params: list[Any],
    columns: list[Any],
    records: Sequence[tuple[Any, ...]],
    varying: list[bool],
) -> bool:
    """True when ``records`` are the parameters peewee put in ``sql``, column for column."""
    quoted = ", ".join(quote_name(db, c.column_name) for c in columns)
    if f"({quoted}) VALUES " not in sql:
        return False
    mine = [v for record in records for v in record]
    if len(mine) != len(params):
        return False
    width = len(columns)
    for i, (a, b) in enumerate(zip(mine, params, strict=True)):
        if varying[i % width]:
            if type(a) is not type(b):
                return False
        elif type(a) is not type(b) or a != b:
            return False
    return True
