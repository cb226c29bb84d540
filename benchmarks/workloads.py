"""W1-W6: what each workload does, how it is timed, and how its result is verified.

A workload runs operations for a time budget (at least one operation) and
returns units per second: rows for W4, primary-key gets for W6, operations
otherwise. Every operation's result is checked, and the tables are counted
by an independent connection after each measurement; a wrong result raises
:class:`Mismatch`.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .peers import Peer
from .schema import BULK_TABLE, ROWS, TABLE, Checker, make_row

W6_TASKS, W6_GETS = 200, 20
_new_rows = itertools.count(ROWS + 1)


class Mismatch(AssertionError):
    """A peer returned or wrote something other than what the workload asked for."""


@dataclass
class Plan:
    """The arguments of one round, the same for every peer in it."""

    seed: int
    pks: list[int] = field(init=False)
    offsets: list[int] = field(init=False)
    batches: list[list[int]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.pks = [rng.randint(1, ROWS) for _ in range(50_000)]
        self.offsets = [rng.randint(0, ROWS - 100) for _ in range(10_000)]
        self.batches = [[rng.randint(1, ROWS) for _ in range(W6_GETS)] for _ in range(W6_TASKS)]


BULK_ROWS = [make_row(n) for n in range(1, ROWS + 1)]


def expect(condition: bool, what: str) -> None:
    """Raise :class:`Mismatch` with ``what`` unless ``condition`` holds."""
    if not condition:
        raise Mismatch(what)


async def timed(
    op: Callable[[int], Awaitable[None]], budget: float, limit: int
) -> tuple[int, float]:
    """Run ``op(0)``, ``op(1)``, ... until ``budget`` seconds or ``limit`` calls."""
    started = time.perf_counter()
    done, elapsed = 0, 0.0
    while done < limit:
        await op(done)
        done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            break
    return done, elapsed


@dataclass(frozen=True)
class Workload:
    """One workload: its key, a title, the unit it counts, and the measuring coroutine."""

    key: str
    title: str
    unit: str
    measure: Callable[[Peer, Plan, Checker, float], Awaitable[float]]
    #: One operation takes long (seconds for slow peers): fewer rounds in a quick run.
    heavy: bool = False


async def w1(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    async def op(i: int) -> None:
        obj = await peer.get(plan.pks[i])
        expect(obj is not None and peer.pk(obj) == plan.pks[i], f"W1 get({plan.pks[i]})")

    done, elapsed = await timed(op, budget, len(plan.pks))
    return done / elapsed


async def w2(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    async def op(i: int) -> None:
        offset = plan.offsets[i]
        objs = await peer.page(offset)
        expect(
            len(objs) == 100
            and peer.pk(objs[0]) == offset + 1
            and peer.pk(objs[-1]) == offset + 100,
            f"W2 page({offset})",
        )

    done, elapsed = await timed(op, budget, len(plan.offsets))
    return done / elapsed


async def w3(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    before = checker.count(TABLE)

    async def op(i: int) -> None:
        await peer.insert(make_row(next(_new_rows)))

    done, elapsed = await timed(op, budget, 1_000_000)
    after = checker.count(TABLE)
    expect(after == before + done, f"W3 inserted {after - before} rows, expected {done}")
    return done / elapsed


async def w4(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    checker.empty_bulk()

    async def op(i: int) -> None:
        await peer.bulk(BULK_ROWS)

    done, elapsed = await timed(op, budget, 1_000_000)
    count = checker.count(BULK_TABLE)
    checker.empty_bulk()
    expect(count == done * ROWS, f"W4 left {count} rows in {BULK_TABLE}, expected {done * ROWS}")
    return done * ROWS / elapsed


async def w5(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    before, quantity = checker.count(TABLE), checker.quantity()

    async def op(i: int) -> None:
        await peer.transaction(plan.pks[i], make_row(next(_new_rows)))

    done, elapsed = await timed(op, budget, len(plan.pks))
    count, added = checker.count(TABLE) - before, checker.quantity() - quantity
    expect(
        count == done and added == done,
        f"W5 inserted {count} rows and added {added} to quantities, expected {done} each",
    )
    return done / elapsed


async def w6(peer: Peer, plan: Plan, checker: Checker, budget: float) -> float:
    wanted = [pk for batch in plan.batches for pk in batch]

    async def op(i: int) -> None:
        objs = await peer.concurrent_gets(plan.batches)
        expect(
            sorted(peer.pk(o) for o in objs) == sorted(wanted),
            f"W6 returned {len(objs)} rows, not the {len(wanted)} asked for",
        )

    done, elapsed = await timed(op, budget, 1_000)
    return done * len(wanted) / elapsed


WORKLOADS = [
    Workload("W1", "get by primary key", "gets/s", w1),
    Workload("W2", "100 rows into models", "pages/s", w2),
    Workload("W3", "insert one row, autocommit", "inserts/s", w3),
    Workload("W4", "bulk insert 10,000 rows", "rows/s", w4, heavy=True),
    Workload("W5", "transaction: get, update, insert", "txns/s", w5),
    Workload("W6", f"{W6_TASKS} tasks x {W6_GETS} gets, pool of 10", "gets/s", w6, heavy=True),
]
