"""Seeded schedules with cancellations, streams, a named lock, prepared queries and
the select fast paths (RELIABILITY R12, R17; README "Locks").

Each seed builds actors as :mod:`tests.faults.test_interleavings` does (tasks of
one ``db.scope()``, a worker thread of it, tasks and threads outside it, and a
plain ``threading.Thread`` outside any loop), but their scripts also:

- stream rows (``db.iterate``) while others write: to the end, left part-way
  (``break``), or cancelled;
- increment a counter row under the named lock (``alock`` / ``lock``): read it,
  pause, write it back plus one, and add a ledger row in the same transaction;
- write through ``db.prepare(...).execute`` and read rows other actors
  acknowledged through prepared ``get``/``list``, ``db.get``, ``db.list`` and
  ``afetch`` with a pydantic schema.

Every async step runs as a task of its own, and a seeded canceller cancels a
random actor's current step after a random number of loop steps. What each
step ended with (acknowledged, failed on purpose, cancelled, and how far its
body got: the marks) decides which row counts may exist afterwards:

- an acknowledged step's rows are all there, a failed one's all absent;
- a cancelled step's rows are all there or all absent, and absent when it was
  cancelled before its body ended (an autocommit statement in flight may land);
- a stream read to the end sees each acknowledged tag whole, and every row a
  stream saw is committed at the end; a read sees what was acknowledged
  before it began;
- the counter equals the number of committed increment rows (no lost update:
  the lock held), and every acknowledged increment is among them;
- the actor's next step after a cancellation works.

After each seed: :func:`~tests.harness.check_invariants` (nothing checked out,
no session idle in transaction, the next owners' autocommit writes committed),
the server's sessions equal the pools' connections (not behind PgBouncer,
whose server sessions are its own), and the lock is free for another
connection.

``FASTPEEWEE_CANCEL_INTERLEAVINGS=N`` runs N seeds instead of the default.

On MySQL/MariaDB a lock holder whose statement is cancelled loses ``GET_LOCK``
at once (src/fastpeewee/locks.py): its work is rolled back, but the next
holder may enter before its ``finally`` ran; so the one-holder-at-a-time
check is the server's (counter == committed increments), not the process's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import peewee
import pytest

from fastpeewee import Param, afetch, alock, lock, to_pydantic

from .. import pgbouncer
from ..conftest import settle
from ..harness import (
    Boom,
    Ledger,
    check_invariants,
    insert,
    insert_sync,
    ledger_database,
)
from .ops import sessions_match_pools, tagged, wait_lock_free


def _seeds(value: str) -> list[int]:
    """``N`` (seeds 0..N-1) or ``a,b,c`` (those seeds: to replay a failure)."""
    return [int(v) for v in value.split(",")] if "," in value else list(range(int(value)))


SEEDS = _seeds(os.environ.get("FASTPEEWEE_CANCEL_INTERLEAVINGS", "40"))
LOCK = "interleavings-counter"
COUNTER = "interleavings_counter"
ASYNC_KINDS = ["auto", "txn", "nested", "stream", "read", "pinsert", "inc", "inc"]
SYNC_KINDS = ["auto", "txn", "nested", "read", "pinsert", "inc"]


class Counter(peewee.Model):
    n = peewee.IntegerField()

    class Meta:
        table_name = COUNTER


LedgerRead = to_pydantic(Ledger, variant="read")


@dataclass
class Step:
    """One step of a script: what it is, and how it ended."""

    kind: str
    tag: str
    n: int
    fail: bool
    marks: dict[str, Any] = field(default_factory=dict)
    status: str = "planned"  # done, failed, cancelled


@dataclass
class Book:
    """What the steps of one seed acknowledged and saw (threads write to it too)."""

    seed: int
    acked: dict[str, int] = field(default_factory=dict)
    increments: int = 0  # acknowledged increments
    streams: list[tuple[dict[str, int], dict[str, int], bool]] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, rows: dict[str, int], increment: bool = False) -> None:
        with self.mutex:
            self.acked.update(rows)
            self.increments += increment

    def snapshot(self) -> tuple[dict[str, int], int]:
        with self.mutex:
            return dict(self.acked), self.increments


@dataclass
class Actor:
    """An actor: a script, and the task running its current step (if async)."""

    name: str
    steps: list[Step]
    current: asyncio.Future[Any] | None = None
    done: bool = False


def plan(rng: random.Random, name: str, prefix: str, kinds: list[str]) -> Actor:
    steps = []
    for i in range(rng.randint(3, 5)):
        kind = rng.choice(kinds)
        steps.append(
            Step(kind, f"{prefix}-{name}-{i}-{kind}", rng.randint(1, 3), rng.random() < 0.3)
        )
    return Actor(name, steps)


def outcomes(step: Step) -> list[dict[str, int]]:
    """The row counts (per tag) ``step`` may have left, one dict per alternative."""
    tag, inner, body = step.tag, step.tag + "-inner", step.marks.get("body", False)
    if step.kind in ("read",):
        return [{}]
    if step.status == "failed":
        return [{tag: 0, inner: 0}] if step.kind == "nested" else [{tag: 0}]
    whole = {
        "nested": {tag: 2, inner: step.marks.get("inner", 0)},
        "txn": {tag: step.n},
    }.get(step.kind, {tag: 1})
    if step.status == "done":
        return [whole]
    none = {t: 0 for t in whole}
    if step.kind in ("auto", "pinsert", "stream"):  # the one autocommit write may land
        return [none, whole]
    return [none, whole] if body else [none]


# -- async steps --------------------------------------------------------------------


async def apause(rng: random.Random) -> None:
    if rng.random() < 0.5:
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(rng.random() * 0.003)


class Queries:
    """The prepared queries of one database."""

    def __init__(self, db: Any) -> None:
        self.by_tag = db.prepare(Ledger.select().where(Ledger.tag == Param("tag")))
        self.add = db.prepare(Ledger.insert(tag=Param("tag")))
        self.counter = db.prepare(Counter.select().where(Counter.id == Param("id")))


async def check_read(db: Any, q: Queries, rng: random.Random, book: Book, seen_at: str) -> None:
    """Read what was acknowledged before, through a random read path; it must be whole."""
    acked, increments = book.snapshot()
    tags = sorted(t for t, n in acked.items() if n)
    how = rng.choice(["prepared-list", "prepared-get", "get", "list", "afetch", "counter"])
    if how == "counter" or not tags:
        row = await (q.counter.get(id=1) if rng.random() < 0.5 else db.get(Counter.select()))
        assert row.n >= increments, f"{seen_at}: counter {row.n} < {increments} acknowledged"
        return
    tag = rng.choice(tags)
    query = Ledger.select().where(Ledger.tag == tag).order_by(Ledger.id)
    if how == "prepared-get":
        assert (await q.by_tag.get(tag=tag)).tag == tag
        return
    if how == "get":
        assert (await db.get(query)).tag == tag
        return
    if how == "prepared-list":
        rows = await q.by_tag.list(tag=tag)
    elif how == "list":
        rows = await db.list(query)
    else:
        rows = await afetch(query, LedgerRead)
    assert [r.tag for r in rows] == [tag] * acked[tag], f"{seen_at}: {how} of {tag}"


async def run_step(db: Any, q: Queries, step: Step, rng: random.Random, book: Book) -> None:
    tag, marks = step.tag, step.marks
    if step.kind == "auto":
        await insert(db, tag)
    elif step.kind == "pinsert":
        await q.add.execute(tag=tag)
    elif step.kind == "txn":
        async with db.atomic():
            for _ in range(step.n):
                await insert(db, tag)
                await apause(rng)
            if step.fail:
                raise Boom
            marks["body"] = True
    elif step.kind == "nested":
        async with db.atomic():
            await insert(db, tag)
            try:
                async with db.atomic():
                    await insert(db, tag + "-inner")
                    await apause(rng)
                    if step.fail:
                        raise Boom
                marks["inner"] = 1
            except Boom:
                marks["inner"] = 0
            await insert(db, tag)
            marks["body"] = True
    elif step.kind == "stream":
        before, _ = book.snapshot()
        seen: dict[str, int] = {}
        stop = rng.choice([None, None, 1, 3])  # None: to the end; else break after it
        query = Ledger.select().where(Ledger.tag.startswith(f"s{book.seed}-"))
        async for row in db.iterate(query, rng.choice([1, 2, 50])):
            seen[row.tag] = seen.get(row.tag, 0) + 1
            if rng.random() < 0.3:
                await apause(rng)
            if stop is not None and sum(seen.values()) >= stop:
                break
        full = stop is None or sum(seen.values()) < stop
        book.streams.append((before, seen, full))
        await insert(db, tag)
    elif step.kind == "read":
        if rng.random() < 0.3:
            async with db.atomic():
                await check_read(db, q, rng, book, tag)
        else:
            await check_read(db, q, rng, book, tag)
    elif step.kind == "inc":
        async with alock(db, LOCK, timeout=15.0):
            row = await (q.counter.get(id=1) if rng.random() < 0.5 else db.get(Counter.select()))
            await apause(rng)
            await db.aexecute(Counter.update(n=row.n + 1).where(Counter.id == 1))
            await insert(db, tag)
            marks["body"] = True
    else:
        raise AssertionError(step.kind)


def locked(backend: str, exc: BaseException) -> bool:
    """SQLite's "database is locked" (one writer at a time): the step did not commit."""
    return (
        backend == "sqlite" and isinstance(exc, peewee.OperationalError) and "locked" in str(exc)
    )


async def run_actor(
    db: Any, q: Queries, actor: Actor, rng: random.Random, book: Book, backend: str
) -> None:
    cancelled_before = False
    try:
        for step in actor.steps:
            job = asyncio.ensure_future(run_step(db, q, step, rng, book))
            actor.current = job
            try:
                await job
                step.status = "done"
            except asyncio.CancelledError:
                if not job.cancelled():
                    raise  # the actor itself was cancelled: not part of the plan
                step.status = "cancelled"
            except Boom:
                step.status = "failed"
            except peewee.OperationalError as exc:
                if not locked(backend, exc):
                    raise
                step.status = "failed"
            finally:
                actor.current = None
            if step.status == "done":
                book.ack(dict(outcomes(step)[0]), increment=step.kind == "inc")
                if cancelled_before:
                    step.marks["after_cancel"] = True
            cancelled_before = step.status == "cancelled"
            await apause(rng)
    finally:
        actor.done = True


# -- sync steps -----------------------------------------------------------------------


def run_sync_step(db: Any, q: Queries, step: Step, rng: random.Random, book: Book) -> None:
    tag, marks = step.tag, step.marks

    def pause() -> None:
        time.sleep(rng.random() * 0.003)

    if step.kind == "auto":
        insert_sync(db, tag)
    elif step.kind == "pinsert":
        q.add.execute_sync(tag=tag)
    elif step.kind == "txn":
        with db.atomic():
            for _ in range(step.n):
                insert_sync(db, tag)
                pause()
            if step.fail:
                raise Boom
    elif step.kind == "nested":
        with db.atomic():
            insert_sync(db, tag)
            try:
                with db.atomic():
                    insert_sync(db, tag + "-inner")
                    pause()
                    if step.fail:
                        raise Boom
                marks["inner"] = 1
            except Boom:
                marks["inner"] = 0
            insert_sync(db, tag)
    elif step.kind == "read":
        acked, increments = book.snapshot()
        tags = sorted(t for t, n in acked.items() if n)
        if not tags:
            assert q.counter.get_sync(id=1).n >= increments
            return
        tag = rng.choice(tags)
        if rng.random() < 0.5:
            rows = q.by_tag.list_sync(tag=tag)
        else:
            rows = list(Ledger.select().where(Ledger.tag == tag))
        assert [r.tag for r in rows] == [tag] * acked[tag], f"{step.tag}: sync read of {tag}"
    elif step.kind == "inc":
        with lock(db, LOCK, timeout=15.0):
            row = Counter.get_by_id(1)
            pause()
            Counter.update(n=row.n + 1).where(Counter.id == 1).execute()
            insert_sync(db, tag)
    else:
        raise AssertionError(step.kind)


def run_sync_actor(
    db: Any, q: Queries, actor: Actor, rng: random.Random, book: Book, backend: str
) -> None:
    try:
        for step in actor.steps:
            try:
                run_sync_step(db, q, step, rng, book)
                step.status = "done"
                book.ack(dict(outcomes(step)[0]), increment=step.kind == "inc")
            except Boom:
                step.status = "failed"
            except peewee.OperationalError as exc:
                if not locked(backend, exc):
                    raise
                step.status = "failed"
            time.sleep(rng.random() * 0.003)
    finally:
        actor.done = True
        db.release_thread()


async def in_plain_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a ``threading.Thread`` of its own (no loop, no context copied)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the awaiting task
            errors.append(exc)

    thread = threading.Thread(target=target, name="plain-actor", daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join)
    if errors:
        raise errors[0]


# -- the scenario -------------------------------------------------------------------


async def canceller(rng: random.Random, actors: list[Actor], budget: int) -> int:
    """Cancel a random actor's current step after a random number of loop steps,
    ``budget`` times at most; return how many cancels hit a running step."""
    hits = 0
    while budget and not all(a.done for a in actors):
        for _ in range(rng.randint(1, 80)):
            await asyncio.sleep(0)
        if rng.random() < 0.2:
            await asyncio.sleep(rng.random() * 0.01)
        running = [a for a in actors if a.current is not None and not a.current.done()]
        if running:
            victim = rng.choice(running)
            victim.current.cancel()  # type: ignore[union-attr]
            hits += 1
            budget -= 1
    return hits


async def scenario(db: Any, q: Queries, seed: int, backend: str, book: Book) -> list[Actor]:
    rng = random.Random(seed)
    prefix = f"s{seed}"
    actors: list[Actor] = []
    cancellable: list[Actor] = []
    in_scope: list[Callable[[], Coroutine[Any, Any, None]]] = []
    outside: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def new(kind: str, kinds: list[str]) -> tuple[Actor, random.Random]:
        actor = plan(rng, f"{kind}{len(actors)}", prefix, kinds)
        actors.append(actor)
        return actor, random.Random(rng.random())

    def task(a: Actor, r: random.Random) -> Callable[[], Coroutine[Any, Any, None]]:
        cancellable.append(a)
        return lambda: run_actor(db, q, a, r, book, backend)

    def sync(a: Actor, r: random.Random) -> Callable[[], None]:
        return lambda: run_sync_actor(db, q, a, r, book, backend)

    for _ in range(rng.randint(2, 3)):  # sibling tasks of one request
        in_scope.append(task(*new("task", ASYNC_KINDS)))
    if rng.random() < 0.6:  # a worker thread of the request
        fn = sync(*new("thread", SYNC_KINDS))
        in_scope.append(lambda f=fn: asyncio.to_thread(f))  # type: ignore[misc]
    outside.append(task(*new("free", ASYNC_KINDS)))  # a task outside any scope
    if rng.random() < 0.4:  # asyncio.to_thread outside any scope
        fn = sync(*new("tothread", SYNC_KINDS))
        outside.append(lambda f=fn: asyncio.to_thread(f))  # type: ignore[misc]
    if rng.random() < 0.5:  # a plain thread outside any loop
        fn = sync(*new("plain", SYNC_KINDS))
        outside.append(lambda f=fn: in_plain_thread(f))  # type: ignore[misc]

    async def request() -> None:
        async with db.scope():
            await asyncio.gather(*(asyncio.create_task(job()) for job in in_scope))

    budget = rng.randint(2, 6)
    await asyncio.gather(
        request(), *(job() for job in outside), canceller(rng, cancellable, budget)
    )
    return actors


def verify(seed: int, actors: list[Actor], book: Book, tags: dict[str, int], counter: int) -> None:
    """Compare the server's rows (``tags``: rows per tag, every seed's) and the
    counter with what the steps of ``seed`` acknowledged and saw."""
    found = {t: n for t, n in tags.items() if t.startswith(f"s{seed}-")}
    where = f"seed {seed}: " + "; ".join(
        f"{a.name}: "
        + ", ".join(
            f"{s.kind}/{s.status}{'/body' if s.marks.get('body') else ''}" for s in a.steps
        )
        for a in actors
    )
    for actor in actors:
        for step in actor.steps:
            options = outcomes(step)
            got = {t: found.get(t, 0) for t in options[0]}
            assert got in options, (
                f"{step.tag} ({step.status}, marks {step.marks}): {got} not in {options}; {where}"
            )
    for before, seen, full in book.streams:
        for tag, n in seen.items():
            assert n <= found.get(tag, 0), f"a stream saw {n} uncommitted row(s) of {tag}; {where}"
            if full:
                assert n == found[tag], (
                    f"a stream saw {n} of the {found[tag]} rows of {tag}; {where}"
                )
        if full:
            for tag, n in before.items():
                assert seen.get(tag, 0) == n, f"a stream missed acknowledged {tag}; {where}"
    increments = sum(n for t, n in tags.items() if t.endswith("-inc"))  # every seed's
    assert counter == increments, (
        f"counter {counter} != {increments} committed increments; {where}"
    )
    assert counter >= book.increments


def asyncpg_tls_probe(context: dict[str, Any]) -> bool:
    """asyncpg's own: a connect cancelled just as its socket opened leaves the
    transport of its SSLRequest probe (sslmode=prefer) unclosed, whose
    ``TLSUpgradeProto.on_data`` future then fails with nobody awaiting it
    (asyncpg/connect_utils.py); no fastpeewee future is involved."""
    exc = context.get("exception")
    return isinstance(exc, ConnectionError) and str(exc) == "unexpected connection_lost() call"


@contextmanager
def unhandled_reports() -> Iterator[list[dict[str, Any]]]:
    """What the running loop reports to its exception handler meanwhile (a task's
    exception never retrieved, an error in a callback)."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    before = loop.get_exception_handler()

    def report(_loop: Any, context: dict[str, Any]) -> None:
        if not asyncpg_tls_probe(context):
            reports.append(context)

    loop.set_exception_handler(report)
    try:
        yield reports
    finally:
        loop.set_exception_handler(before)


@pytest.fixture
async def env(backend, request, tmp_path):
    options: dict[str, Any] = {"pool_size": 8, "acquire_timeout": 15.0}
    if backend == "sqlite":
        options["pragmas"] = {"journal_mode": "wal", "synchronous": "off"}
        options["timeout"] = 15  # one writer at a time: siblings wait for each other
    async with ledger_database(backend, request, tmp_path, **tagged(backend, options)) as (
        db,
        outside,
    ):
        await asyncio.to_thread(outside.query, f"DROP TABLE IF EXISTS {COUNTER}")
        await asyncio.to_thread(
            outside.query, f"CREATE TABLE {COUNTER} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"
        )
        await asyncio.to_thread(outside.query, f"INSERT INTO {COUNTER} (id, n) VALUES (1, 0)")
        Ledger.bind(db)
        Counter.bind(db)
        yield db, outside


async def test_seeded_schedules_with_cancellations_streams_locks_and_prepared_queries(
    env, backend, request
):
    db, outside = env
    q = Queries(db)
    behind_pooler = pgbouncer.requested(request)
    with unhandled_reports() as reports:
        await run_seeds(db, outside, q, backend, behind_pooler)
        gc.collect()
    assert not reports, [(c.get("message"), c.get("exception")) for c in reports]


async def run_seeds(db: Any, outside: Any, q: Queries, backend: str, behind_pooler: bool) -> None:
    cancelled = recovered = 0
    for seed in SEEDS:
        book = Book(seed)
        try:
            actors = await asyncio.wait_for(scenario(db, q, seed, backend, book), 60)
        except BaseException as exc:
            exc.add_note(f"seed {seed} of tests/faults/test_interleavings_cancel.py")
            raise
        tags = await asyncio.to_thread(outside.tags)
        (counter,) = (await asyncio.to_thread(outside.query, f"SELECT n FROM {COUNTER}"))[0]
        verify(seed, actors, book, tags, counter)
        steps = [s for a in actors for s in a.steps]
        cancelled += sum(s.status == "cancelled" for s in steps)
        recovered += sum(bool(s.marks.get("after_cancel")) for s in steps)
        await wait_lock_free(outside, LOCK)
        if not behind_pooler:  # PgBouncer's server sessions are its own
            await sessions_match_pools(db, outside)
        await check_invariants(db, outside, probe=f"probe{seed}")
    # The schedules did cancel steps, and actors went on after it.
    assert cancelled and recovered, (cancelled, recovered)


async def test_a_stream_opened_beside_a_siblings_begin_stays_out_of_its_transaction(env, backend):
    """Found by the schedules above (seeds 15 and 30 on PostgreSQL, by timing): in a
    request scope, a sibling's ``iterate()`` called while a task's ``BEGIN`` was
    in flight waited for the shared connection and then opened its cursor inside
    that task's transaction; cancelled mid-fetch, it lost the transaction
    (``TransactionLost`` at the task's next statement). The stream must run on a
    connection of its own, so cancelling it after k loop steps, for every k,
    leaves the transaction alone: it commits both its rows."""
    db, outside = env
    await db.aexecute(Ledger.insert_many([{"tag": "row"}] * 30))
    for k in range(0, 80, 2):
        tag = f"owner-{k}"

        async def owner(tag: str = tag) -> None:
            async with db.atomic():
                await insert(db, tag)
                await insert(db, tag)

        async def stream() -> None:
            async for _row in db.iterate(Ledger.select().where(Ledger.tag == "row"), 1):
                pass

        async with db.scope():
            first = asyncio.create_task(owner())  # its BEGIN goes out first
            second = asyncio.create_task(stream())
            for _ in range(k):
                await asyncio.sleep(0)
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
            await first  # TransactionLost before the fix
        assert (await asyncio.to_thread(outside.tags)).get(tag) == 2, k
    await check_invariants(db, outside, probe="probe-stream-beside-begin")


async def test_a_stream_cancelled_twice_leaves_no_unretrieved_error(env, backend):
    """Found by the schedules above (PostgreSQL): a stream cancelled, then cancelled
    again while its cursor was closing, had that close go on in a shielded task
    whose error (its connection closed under it) nobody retrieved, so asyncio
    logged "Task exception was never retrieved" at ERROR level. Two cancels,
    the first after k loop steps for every k: no such report, and the next
    owners' writes commit."""
    db, outside = env
    await db.aexecute(Ledger.insert_many([{"tag": "row"}] * 30))
    with unhandled_reports() as reports:
        for k in range(40):

            async def stream() -> None:
                async for _row in db.iterate(Ledger.select().where(Ledger.tag == "row"), 1):
                    pass

            job = asyncio.ensure_future(stream())
            for _ in range(k):
                await asyncio.sleep(0)
            job.cancel()
            await asyncio.sleep(0)
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            await settle(db)
            gc.collect()
        await asyncio.sleep(0.05)
        gc.collect()
    assert not reports, [c.get("message") for c in reports]
    await check_invariants(db, outside, probe="probe-stream-cancelled-twice")
