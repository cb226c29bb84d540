"""Running a whole transaction again when the database aborted it for a conflict.

Under ``SERIALIZABLE`` (or ``REPEATABLE READ``) PostgreSQL aborts one of two
transactions whose reads and writes cannot be ordered (SQLSTATE 40001), and
every database aborts one of two transactions waiting on each other's locks
(a deadlock). The aborted transaction did nothing; running it again from the
start usually succeeds. Only the *whole* transaction can run again (the
statement that failed depended on what the transaction read before it), so
the unit retried here is a function that runs inside ``db.atomic()``::

    @db.retry_transaction(attempts=5)
    async def transfer(src: int, dst: int, amount: int) -> None:
        ...                                  # every attempt in a fresh transaction

    await db.arun_in_transaction(lambda: transfer_body(1, 2, 10))
    db.run_in_transaction(sync_body)         # a thread: the sync twin

The rule, all of it here:

- an attempt is one ``atomic()`` block around the function: committed when it
  returns, rolled back when it raises;
- only the errors :func:`is_retryable` names run it again (or those of
  ``retry_if``), after a jittered exponential pause; anything else propagates
  at once, and the last error after ``attempts`` runs (with a note saying so);
- cancellation (and any ``BaseException``) is never retried nor swallowed;
- inside a transaction that is already open, the function runs once in a
  savepoint and its error propagates: the conflict aborted the outer
  transaction, which only its own caller can run again.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import _causes

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = [
    "RETRYABLE_MYSQL_CODES",
    "RETRYABLE_SQLITE_CODES",
    "RETRYABLE_SQLSTATES",
    "RetryPolicy",
    "arun_in_transaction",
    "is_retryable",
    "retry_transaction",
    "run_in_transaction",
]

logger = logging.getLogger("fastpeewee.retries")
T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure: SERIALIZABLE / REPEATABLE READ conflicts
        "40P01",  # deadlock_detected
    }
)
"""PostgreSQL SQLSTATEs after which the whole transaction may run again."""

RETRYABLE_MYSQL_CODES = frozenset(
    {
        1213,  # ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back
        1020,  # ER_CHECKREAD: MariaDB's innodb_snapshot_isolation conflict
    }
)
"""MySQL/MariaDB error numbers after which the whole transaction may run again.

Not 1205 (``ER_LOCK_WAIT_TIMEOUT``): by the time it comes, the caller has
waited ``innodb_lock_wait_timeout`` (50 s by default) behind a lock somebody
holds for long, and InnoDB rolled back only the statement. Running the
transaction again would wait as long again; pass ``retry_if`` to opt in.
"""

RETRYABLE_SQLITE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY (and its extended codes, SQLITE_BUSY_SNAPSHOT among them)
    }
)
"""SQLite primary result codes after which the whole transaction may run again.

``SQLITE_BUSY`` is SQLite's deadlock: a transaction that has read and then
wants to write while another connection writes gets it at once, without
waiting (waiting could never help: its snapshot is stale), as does one whose
snapshot went stale meanwhile (``SQLITE_BUSY_SNAPSHOT``). The same code also
comes after the busy timeout ran out behind a long writer; that too is
retried, so a run may take ``attempts`` busy timeouts (``BEGIN IMMEDIATE``,
``db.atomic("IMMEDIATE")``, avoids both).
"""


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` aborted a transaction that may succeed if run again from the start.

    A serialization failure or a deadlock: PostgreSQL SQLSTATE 40001 and
    40P01, MySQL/MariaDB 1213 (and MariaDB's 1020), SQLite's ``SQLITE_BUSY``.
    False for everything else, lost connections included (a COMMIT whose
    answer was lost may have committed). Example::

        except peewee.DatabaseError as exc:
            if is_retryable(exc): ...        # run the whole transaction again
    """
    if not isinstance(exc, Exception):
        return False
    return any(_conflict(cause) for cause in _causes(exc))


def _conflict(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate in RETRYABLE_SQLSTATES
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in RETRYABLE_SQLITE_CODES
    if any(klass.__name__ == "MySQLError" for klass in type(exc).__mro__):
        return bool(exc.args) and exc.args[0] in RETRYABLE_MYSQL_CODES
    return False


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often, and after what pauses, a transaction runs again.

    Example::

        RetryPolicy(attempts=10, backoff=0.05, retry_if=my_predicate)
    """

    attempts: int = 5
    """Runs in all, the first included (so ``attempts - 1`` retries)."""
    backoff: float = 0.02
    """Longest pause before the first retry, in seconds; it doubles for each
    further one. Each pause is drawn between 0 and that (full jitter), so two
    transactions that conflicted do not meet again in step."""
    backoff_max: float = 1.0
    """Longest pause before any retry."""
    retry_if: Callable[[BaseException], bool] = is_retryable
    """Which errors run the transaction again."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if not 0 <= self.backoff <= self.backoff_max:
            raise ValueError(
                f"backoff must be between 0 and backoff_max={self.backoff_max}, got {self.backoff}"
            )

    def pause(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th run failed."""
        bound = min(self.backoff_max, self.backoff * 2.0 ** (failed - 1))
        return random.uniform(0, bound)  # jitter, not secrecy


async def arun_in_transaction(
    db: AsyncDatabase, fn: Callable[[], Awaitable[T]], policy: RetryPolicy
) -> T:
    """Run ``await fn()`` in ``db.atomic()``, again while :attr:`RetryPolicy.retry_if` says so."""
    if db.in_transaction():  # type: ignore[attr-defined]
        async with db.atomic():
            return await fn()
    failed = 0
    while True:
        try:
            async with db.atomic():
                return await fn()
        except Exception as exc:
            failed += 1
            pause = _next_pause(policy, fn, exc, failed)
        await asyncio.sleep(pause)


def run_in_transaction(db: AsyncDatabase, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Sync twin of :func:`arun_in_transaction`, for threads: ``fn()`` in ``with db.atomic()``."""
    if db.in_transaction():  # type: ignore[attr-defined]
        with db.atomic():
            return fn()
    failed = 0
    while True:
        try:
            with db.atomic():
                return fn()
        except Exception as exc:
            failed += 1
            pause = _next_pause(policy, fn, exc, failed)
        time.sleep(pause)


def _next_pause(policy: RetryPolicy, fn: object, exc: Exception, failed: int) -> float:
    """The pause before the next run, or re-raise ``exc`` (the caller's ``except``)."""
    if not policy.retry_if(exc):
        raise exc
    if failed >= policy.attempts:
        exc.add_note(f"fastpeewee: the transaction failed {failed} times; no retry left")
        raise exc
    pause = policy.pause(failed)
    logger.info(
        "transaction %s aborted (%s: %s), run %d of %d; running it again in %.3f s",
        getattr(getattr(fn, "func", fn), "__qualname__", fn),  # a partial: its function
        type(exc).__name__,
        exc,
        failed,
        policy.attempts,
        pause,
    )
    return pause


def retry_transaction(
    db: AsyncDatabase, policy: RetryPolicy
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator: each call of the function runs as :func:`arun_in_transaction`
    (``async def``) or :func:`run_in_transaction` (``def``) does."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def arun(*args: Any, **kwargs: Any) -> Any:
                return await arun_in_transaction(
                    db, functools.partial(fn, *args, **kwargs), policy
                )

            return arun

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return run_in_transaction(db, functools.partial(fn, *args, **kwargs), policy)

        return run

    return decorate
