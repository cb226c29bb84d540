"""Prepared queries: compile a query once, then run it with new values at driver speed.

``db.prepare(query)`` compiles a query written with :class:`~fastpeewee.fast.compiled.Param`
placeholders into a :class:`PreparedQuery`. Each run only binds the values
(a list copy and the converters peewee would apply), sends the SQL through
the database's one async (or sync) execution path, so that query hooks,
tracing, the slow-statement log, read-replica routing, the pool and the
task's connection state all see it as any other statement, and builds the
rows with :mod:`fastpeewee.fast.rows`. On PostgreSQL the SQL text never
changes, so asyncpg's per-connection statement cache prepares it once per
connection and every later run is a bind and execute.

Example::

    by_id = db.prepare(User.select().where(User.id == Param("id")))
    ann = await by_id.get(id=5)                  # the model, or User.DoesNotExist
    page = db.prepare(User.select().order_by(User.id).limit(20).offset(Param("at")))
    users = await page.list(at=40)

The fast-path switch (``fast_paths=False``, ``FASTPEEWEE_FAST_PATHS=0``)
does not turn this API off, since the application calls it itself; rows are
then built by peewee's own cursor wrappers.

Limits: the SQL is built once, when prepared; a model changed afterwards
(fields added, table renamed) needs a new ``prepare``. A value that peewee
would render as SQL (a node such as ``fn.NOW()``, a subquery) cannot be
bound to a placeholder: such a query is built per call.
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable
from typing import Any

import peewee

from ..contracts.peewee import cursor_wrapper, has_limit, prepare_insert, returning
from .compiled import Template, Uncompilable, compile_query
from .rows import NO_ROW, ModelRows, kept_object, plain_model_columns

__all__ = ["PreparedQuery"]


class PreparedQuery:
    """A query compiled once for one database, run with new values each time.

    Made by :meth:`fastpeewee.AsyncDatabase.prepare`. The async methods
    (:meth:`get`, :meth:`first`, :meth:`list`, :meth:`execute`) run on the
    event loop; the ``*_sync`` twins run from sync code (a thread, or code
    inside ``db.run``). Values are given by placeholder name, as keywords::

        q = db.prepare(Item.select().where(Item.price > Param("min")))
        cheap = await q.list(min=10)
    """

    __slots__ = (
        "_columns",
        "_fast",
        "_names",
        "_one",
        "_select",
        "db",
        "layout",
        "query",
        "template",
    )

    def __init__(self, db: Any, query: Any) -> None:
        if isinstance(query, peewee.Insert):
            query = prepare_insert(query.clone(), db)  # RETURNING the new key, as peewee
        self.db = db
        self.query = query
        self._select = isinstance(query, peewee.SelectBase)
        try:
            self.template: Template = compile_query(db, query)
            # get() and first() read one row: LIMIT 1 unless the query has its own.
            one = query
            if self._select and not has_limit(query):
                one = query.limit(1)
            self._one = self.template if one is query else compile_query(db, one)
        except Uncompilable as exc:
            raise Uncompilable(
                f"cannot prepare this query: {exc}; run it with db.aexecute(query) instead"
            ) from exc
        names = self.template.names
        if not all(isinstance(name, str) for name in names):
            raise TypeError(
                f"prepared queries take values by keyword: name every Param with a "
                f"string (got {[n for n in names if not isinstance(n, str)]!r})"
            )
        self._names: frozenset[str] = frozenset(names)  # type: ignore[arg-type]
        self._fast = bool(db.fast_paths)
        # What hydration needs, worked out once: the selected columns of a plain
        # one-model select (None: peewee's wrapper), and the layout of the rows.
        self._columns = plain_model_columns(query) if self._select and self._fast else None
        # The rows' layout, kept by fast.rows.ModelRows on the first run.
        self.layout: tuple[Any, dict[str, Any]] | None = None

    @property
    def names(self) -> builtins.list[Hashable]:
        """The placeholder names the query takes (each once, in parameter order)."""
        return builtins.list(dict.fromkeys(self.template.names))

    @property
    def sql(self) -> str:
        """The compiled SQL, in the database's parameter style."""
        return self.template.sql

    def __repr__(self) -> str:
        return f"<PreparedQuery {self.template.sql!r} names={self.names!r}>"

    # -- binding -------------------------------------------------------------

    def _bind(self, template: Template, values: dict[str, Any]) -> builtins.list[Any]:
        if values.keys() != self._names:
            raise self._wrong_names(values)
        params = template.bind(values)
        if params is None:
            raise TypeError(
                "a value given to this prepared query is a SQL expression (a peewee node, "
                "a model class, or converts to one); prepared queries bind plain values "
                "only: build this query per call instead (db.aexecute, db.get, db.list)"
            )
        return params

    def _wrong_names(self, values: dict[str, Any]) -> TypeError:
        missing = sorted(self._names - values.keys())
        unexpected = sorted(values.keys() - self._names)
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        return TypeError(
            f"this prepared query takes the values {sorted(self._names)} by keyword: "
            + ", ".join(parts)
        )

    def _require_select(self, what: str) -> None:
        if not self._select:
            raise TypeError(f"{what}() reads rows: use execute() for {type(self.query).__name__}")

    # -- rows ----------------------------------------------------------------

    def _wrapper(self, cursor: Any) -> Any:
        """The cursor wrapper ``query.execute()`` would give for ``cursor``; rows
        built with the layout kept here (the result columns of one SQL text do not
        change: worked out on the first run)."""
        columns = self._columns
        if columns is None:
            return cursor_wrapper(self.query, cursor)
        model = self.query.model
        wrapper = ModelRows(cursor, model, columns, model)
        wrapper._kept = self
        return wrapper

    def _rows(self, cursor: Any) -> builtins.list[Any]:
        if self._columns is None:
            return builtins.list(self._wrapper(cursor))
        rows = cursor.fetchall()
        if not rows:
            return []  # peewee reads the columns at the first row (PostgreSQL: none without)
        wrapper = self._wrapper(cursor)
        wrapper.initialize()
        process = wrapper.process_row
        return [process(row) for row in rows]

    def _first(self, cursor: Any) -> Any:
        if self._columns is None:
            return next(iter(cursor_wrapper(self.query, cursor)), NO_ROW)
        row = cursor.fetchone()
        if row is None:
            return NO_ROW
        found = kept_object(self.query.model, self, cursor, row)
        if found is not NO_ROW:
            return found
        wrapper = self._wrapper(cursor)
        wrapper.initialize()
        return wrapper.process_row(row)

    def _found(self, found: Any, params: builtins.list[Any]) -> Any:
        if found is NO_ROW:
            model = self.query.model
            raise model.DoesNotExist(
                f"{model} instance matching query does not exist:\n"
                f"SQL: {self._one.sql}\nParams: {params}"
            )
        return found

    def _result(self, cursor: Any) -> Any:
        """What ``query.execute()`` returns, for this run's cursor."""
        if self._select:
            return self._wrapper(cursor)
        query = self.query
        if returning(query):
            cursor = cursor_wrapper(query, cursor)
        return query.handle_result(self.db, cursor)

    # -- async ---------------------------------------------------------------

    async def get(self, /, **values: Any) -> Any:
        """The first row (LIMIT 1 unless the query has a LIMIT); raises the model's
        ``DoesNotExist`` when there is none, as ``query.get()`` does."""
        self._require_select("get")
        params = self._bind(self._one, values)
        cursor = await self.db.aexecute_sql(self._one.sql, params)
        return self._found(self._first(cursor), params)

    async def first(self, /, **values: Any) -> Any:
        """The first row (LIMIT 1 unless the query has a LIMIT), or None."""
        self._require_select("first")
        cursor = await self.db.aexecute_sql(self._one.sql, self._bind(self._one, values))
        found = self._first(cursor)
        return None if found is NO_ROW else found

    async def list(self, /, **values: Any) -> builtins.list[Any]:
        """Every row, as ``list(query)`` gives them."""
        self._require_select("list")
        template = self.template
        cursor = await self.db.aexecute_sql(template.sql, self._bind(template, values))
        return self._rows(cursor)

    async def execute(self, /, **values: Any) -> Any:
        """Run the query; returns what ``query.execute()`` returns (a cursor wrapper
        for a select, the new key for an insert, the row count for an update or
        delete)."""
        template = self.template
        cursor = await self.db.aexecute_sql(template.sql, self._bind(template, values))
        return self._result(cursor)

    # -- sync ----------------------------------------------------------------

    def get_sync(self, /, **values: Any) -> Any:
        """:meth:`get` from sync code."""
        self._require_select("get")
        params = self._bind(self._one, values)
        cursor = self.db.execute_sql(self._one.sql, params)
        return self._found(self._first(cursor), params)

    def first_sync(self, /, **values: Any) -> Any:
        """:meth:`first` from sync code."""
        self._require_select("first")
        cursor = self.db.execute_sql(self._one.sql, self._bind(self._one, values))
        found = self._first(cursor)
        return None if found is NO_ROW else found

    def list_sync(self, /, **values: Any) -> builtins.list[Any]:
        """:meth:`list` from sync code."""
        self._require_select("list")
        template = self.template
        return self._rows(self.db.execute_sql(template.sql, self._bind(template, values)))

    def execute_sync(self, /, **values: Any) -> Any:
        """:meth:`execute` from sync code."""
        template = self.template
        cursor = self.db.execute_sql(template.sql, self._bind(template, values))
        return self._result(cursor)
