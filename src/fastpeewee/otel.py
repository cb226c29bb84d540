"""OpenTelemetry for a database: a span per statement and pool metrics (``fastpeewee[otel]``).

Example::

    from fastpeewee import otel

    otel.instrument(db)      # spans and metrics through the global providers
    otel.uninstrument(db)    # back to no work per statement

Spans follow the database semantic conventions: one ``CLIENT`` span per
statement (sync, async, streamed, bulk, COPY: every execution path), named
``"{db.operation.name} {db.collection.name}"``, with ``db.system.name`` (and
the older ``db.system``), ``db.namespace``, ``db.operation.name``,
``db.collection.name`` (the first table of the SQL), ``db.query.text`` (the SQL
with its placeholders: parameter values are never recorded),
``db.operation.batch.size`` (executemany), ``server.address`` /
``server.port``, and ``fastpeewee.pool.wait`` (seconds the statement waited for
a connection). A failed statement has ``error.type`` (the exception's class),
``db.response.status_code`` (SQLSTATE, MySQL error number or SQLite error name)
and status ERROR; the error's message is not recorded, as it may quote values.
Spans are not made current: the parent is whatever span is current where the
statement runs (a web framework's request span, say).

Pool metrics read :meth:`~fastpeewee.AsyncDatabase.pool_stats` when collected,
under the conventions' ``db.client.connection.*`` names, with the attribute
``db.client.connection.pool.name``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise peewee.ImproperlyConfigured(
        "opentelemetry-api is not installed: pip install 'fastpeewee[otel]'"
    ) from exc

from ._version import __version__
from .backends.mysql import AsyncMySQLDatabase
from .backends.postgres import AsyncPostgresqlDatabase
from .backends.sqlite import AsyncSqliteDatabase
from .database import AsyncDatabase
from .drivers.base import Bulk, CopyRequest
from .pool import Pool
from .tracing import Watch

__all__ = ["instrument", "instrumented", "uninstrument"]

_SCOPE = "fastpeewee"
# The first table a statement names, for db.collection.name and the span name.
_TARGET = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN|COPY|TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+"
    r"([`\"]?[\w$]+[`\"]?(?:\.[`\"]?[\w$]+[`\"]?)?)",
    re.IGNORECASE,
)
_OPERATION = re.compile(r"[\s(]*([A-Za-z]+)")
# The semantic conventions' buckets for durations in seconds.
_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
_MAX_CACHED = 2048  # distinct SQL strings described; then the cache starts again


def instrument(
    db: AsyncDatabase,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    query_text: bool = True,
) -> None:
    """Trace every statement of ``db`` and report its pools' metrics.

    The providers default to OpenTelemetry's global ones. ``query_text=False``
    leaves ``db.query.text`` out (for SQL written by hand with literals in it).
    Instrumenting again replaces the previous instrumentation. Example::

        otel.instrument(db, tracer_provider=provider)
    """
    tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
    instruments = _instruments(metrics.get_meter(_SCOPE, __version__, meter_provider))
    slow = db.slow_query_seconds
    db._set_watch(Watch(slow, _Tracer(db, tracer, instruments, query_text)))
    instruments.databases.add(db)


def uninstrument(db: AsyncDatabase) -> None:
    """Stop tracing ``db`` and reporting its pools; the slow-statement log stays.

    Example::

        otel.uninstrument(db)
    """
    db._set_watch(Watch.of(db.slow_query_seconds, None))
    for instruments in _BY_METER.values():
        instruments.databases.discard(db)


def instrumented(db: AsyncDatabase) -> bool:
    """True when ``db`` is instrumented.

    Example::

        assert otel.instrumented(db)
    """
    return db._watch is not None and isinstance(db._watch.tracer, _Tracer)


class _Tracer:
    """The :class:`~fastpeewee.tracing.StatementTracer` of an instrumented database."""

    def __init__(
        self, db: AsyncDatabase, tracer: Any, instruments: _Instruments, query_text: bool
    ) -> None:
        self._tracer = tracer
        self._instruments = instruments
        self._query_text = query_text
        self._mysql = isinstance(db, AsyncMySQLDatabase)
        self._mariadb = bool(self._mysql and db.mariadb)  # type: ignore[attr-defined]
        self._base = _base_attributes(db, self._mariadb)
        self._described: dict[str, tuple[str, dict[str, Any]]] = {}

    def start(self, db: Any, sql: str, bulk: Bulk | None) -> Any:
        if self._mysql and bool(db.mariadb) is not self._mariadb:  # learnt on first connect
            self._mariadb = bool(db.mariadb)
            self._base = _base_attributes(db, self._mariadb)
            self._described.clear()
        found = self._described.get(sql)
        if found is None:
            found = self._describe(sql)
        name, attributes = found
        if bulk is not None and not isinstance(bulk, CopyRequest):
            attributes = {**attributes, "db.operation.batch.size": len(bulk)}
        return self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    def _describe(self, sql: str) -> tuple[str, dict[str, Any]]:
        attributes = dict(self._base)
        op = _OPERATION.match(sql)
        operation = op.group(1).upper() if op else "SQL"
        attributes["db.operation.name"] = operation
        target = _TARGET.search(sql)
        name = operation
        if target is not None:
            collection = target.group(1).replace('"', "").replace("`", "")
            attributes["db.collection.name"] = collection
            name = f"{operation} {collection}"
        if self._query_text:
            attributes["db.query.text"] = sql
        if len(self._described) >= _MAX_CACHED:
            self._described.clear()
        self._described[sql] = (name, attributes)
        return name, attributes

    def end(self, span: Any, exc: BaseException | None, pool_wait: float) -> None:
        if pool_wait:
            span.set_attribute("fastpeewee.pool.wait", pool_wait)
        if exc is not None:
            kind = type(exc)
            error_type = f"{kind.__module__}.{kind.__qualname__}"
            span.set_attribute("error.type", error_type)
            code = _status_code(exc)
            if code is not None:
                span.set_attribute("db.response.status_code", code)
            # The message is left out: drivers quote values in it ("Key (name)=(ann)").
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()

    def acquired(self, pool: Pool[Any], seconds: float) -> None:
        self._instruments.wait_time.record(seconds, {"db.client.connection.pool.name": pool.name})


def _base_attributes(db: AsyncDatabase, mariadb: bool) -> dict[str, Any]:
    """The attributes every span of ``db`` carries."""
    system, default_port = "other_sql", None
    if isinstance(db, AsyncPostgresqlDatabase):
        system, default_port = "postgresql", 5432
    elif isinstance(db, AsyncMySQLDatabase):
        system, default_port = ("mariadb" if mariadb else "mysql"), 3306
    elif isinstance(db, AsyncSqliteDatabase):
        system = "sqlite"
    attributes: dict[str, Any] = {"db.system.name": system, "db.system": system}
    if db.database:
        attributes["db.namespace"] = str(db.database)
    host = db.connect_params.get("host")
    if default_port is not None and isinstance(host, str) and not host.startswith("/"):
        attributes["server.address"] = host
        attributes["server.port"] = int(db.connect_params.get("port") or default_port)
    return attributes


def _status_code(exc: BaseException) -> str | None:
    """SQLSTATE (PostgreSQL), error number (MySQL) or error name (SQLite) of a driver error."""
    seen = exc.__cause__ or exc
    args = seen.args
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return str(args[0])
    for name in ("sqlstate", "sqlite_errorname"):
        value = getattr(seen, name, None)
        if isinstance(value, str):
            return value
    return None


class _Instruments:
    """The pool instruments of one meter, reading every database instrumented with it."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter  # kept: _BY_METER is keyed by its id
        self.databases: weakref.WeakSet[AsyncDatabase] = weakref.WeakSet()
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="Time it took to obtain a connection from the pool",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        gauges = [
            ("db.client.connection.count", self._count, "Connections by state (idle, used)"),
            ("db.client.connection.max", self._max, "Most connections the pool opens"),
            ("db.client.connection.idle.min", self._min, "Idle connections the pool keeps"),
            ("db.client.connection.pending_requests", self._waiting, "Callers waiting"),
        ]
        for name, callback, description in gauges:
            meter.create_observable_up_down_counter(
                name, callbacks=[callback], unit="{connection}", description=description
            )
        meter.create_observable_gauge(
            "fastpeewee.pool.size",
            callbacks=[self._size],
            unit="{connection}",
            description="Connections open or being opened",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            callbacks=[self._timeouts],
            unit="{timeout}",
            description="Acquires that gave up after acquire_timeout",
        )

    def _stats(self) -> Iterable[tuple[Any, dict[str, Any]]]:
        for db in list(self.databases):
            for stats in db.pool_stats():
                yield stats, {"db.client.connection.pool.name": stats.name}

    def _count(self, options: CallbackOptions) -> Sequence[Observation]:
        found = []
        for stats, attributes in self._stats():
            found.append(
                Observation(stats.idle, {**attributes, "db.client.connection.state": "idle"})
            )
            found.append(
                Observation(stats.in_use, {**attributes, "db.client.connection.state": "used"})
            )
        return found

    def _max(self, options: CallbackOptions) -> Sequence[Observation]:
        return [Observation(stats.pool_size, attributes) for stats, attributes in self._stats()]

    def _min(self, options: CallbackOptions) -> Sequence[Observation]:
        return [
            Observation(db.pool_config.pool_min_size, {"db.client.connection.pool.name": s.name})
            for db in list(self.databases)
            for s in db.pool_stats()
        ]

    def _waiting(self, options: CallbackOptions) -> Sequence[Observation]:
        return [Observation(stats.waiting, attributes) for stats, attributes in self._stats()]

    def _size(self, options: CallbackOptions) -> Sequence[Observation]:
        return [Observation(stats.size, attributes) for stats, attributes in self._stats()]

    def _timeouts(self, options: CallbackOptions) -> Sequence[Observation]:
        return [Observation(stats.timeouts, attributes) for stats, attributes in self._stats()]


# One set of instruments per meter: instruments cannot be removed, and a meter
# refuses a second instrument of the same name.
_BY_METER: dict[int, _Instruments] = {}


def _instruments(meter: Any) -> _Instruments:
    found = _BY_METER.get(id(meter))
    if found is None:
        found = _BY_METER[id(meter)] = _Instruments(meter)
    return found
