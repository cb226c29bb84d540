"""What a watched database does around each statement: the slow-statement log and a tracer.

A database is *watched* when it has a slow-statement threshold
(``slow_query_seconds=``) or a tracer (:func:`fastpeewee.otel.instrument`).
Unwatched, its execution paths check one attribute (``db._watch is None``)
and do nothing more; nothing here imports OpenTelemetry.

Watched, each statement gets a :class:`Statement` record from
:meth:`Watch.begin`, ended when the statement ends. While it runs, the record
is the current one of its context, so the time its pool acquire took (the
pool's ``on_acquire`` hook) is charged to it. SQL is logged and traced as
written, with its placeholders: parameter values never reach the log or a span.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .drivers.base import Bulk
    from .pool import Pool

__all__ = ["Statement", "StatementTracer", "Watch", "slow_logger"]

slow_logger = logging.getLogger("fastpeewee.slow")
"""Where statements slower than ``slow_query_seconds`` are logged (WARNING)."""

_current: contextvars.ContextVar[Statement | None] = contextvars.ContextVar(
    "fastpeewee-statement", default=None
)


class StatementTracer(Protocol):
    """What a tracer plugs into a :class:`Watch` (:mod:`fastpeewee.otel` has one)."""

    def start(self, db: Any, sql: str, bulk: Bulk | None) -> Any:
        """Open a span for a statement about to run; return it (or None)."""

    def end(self, span: Any, exc: BaseException | None, pool_wait: float) -> None:
        """Close ``span``: the statement ended, raising ``exc`` unless None."""

    def acquired(self, pool: Pool[Any], seconds: float) -> None:
        """A connection was taken from ``pool`` after ``seconds``."""


class Watch:
    """A database's watch settings: a slow-statement threshold and a tracer.

    Example::

        db._watch = Watch(slow_seconds=0.5, tracer=None)   # what slow_query_seconds=0.5 sets
    """

    __slots__ = ("slow_seconds", "tracer")

    def __init__(self, slow_seconds: float | None, tracer: StatementTracer | None) -> None:
        if slow_seconds is not None and slow_seconds < 0:
            raise ValueError(f"slow_query_seconds must be >= 0 or None, got {slow_seconds}")
        self.slow_seconds = slow_seconds
        self.tracer = tracer

    @staticmethod
    def of(slow_seconds: float | None, tracer: StatementTracer | None) -> Watch | None:
        """A watch for these settings, or None when there is nothing to watch."""
        if slow_seconds is None and tracer is None:
            return None
        return Watch(slow_seconds, tracer)

    def begin(self, db: Any, sql: str, bulk: Bulk | None) -> Statement:
        """Start watching one statement of ``db``; call ``end`` on the result."""
        span = None if self.tracer is None else self.tracer.start(db, sql, bulk)
        return Statement(self, sql, span)

    def acquired(self, pool: Pool[Any], seconds: float) -> None:
        """The pools' ``on_acquire`` hook: charge the wait to the running statement."""
        statement = _current.get()
        if statement is not None:
            statement.pool_wait += seconds
        if self.tracer is not None:
            self.tracer.acquired(pool, seconds)


class Statement:
    """One watched statement, from :meth:`Watch.begin` to :meth:`end`."""

    __slots__ = ("pool_wait", "span", "sql", "start", "token", "watch")

    def __init__(self, watch: Watch, sql: str, span: Any) -> None:
        self.watch = watch
        self.sql = sql
        self.span = span
        self.pool_wait = 0.0
        self.token = _current.set(self)
        self.start = time.perf_counter()

    def end(self, exc: BaseException | None) -> None:
        """The statement ended (raising ``exc`` unless None): close its span, log it if slow."""
        duration = time.perf_counter() - self.start
        try:
            _current.reset(self.token)
        except ValueError:  # ended in another context (a generator closed elsewhere)
            _current.set(None)
        watch = self.watch
        if watch.tracer is not None:
            watch.tracer.end(self.span, exc, self.pool_wait)
        slow = watch.slow_seconds
        if slow is not None and duration >= slow:
            self._log_slow(duration, exc)

    def _log_slow(self, duration: float, exc: BaseException | None) -> None:
        outcome = "" if exc is None else f", failed: {type(exc).__name__}"
        slow_logger.warning(
            "slow statement: %.3f s (pool wait %.3f s%s): %s",
            duration,
            self.pool_wait,
            outcome,
            self.sql,
            extra={"sql": self.sql, "duration": duration, "pool_wait": self.pool_wait},
        )
