"""Many tasks, mixed work, a third of the transactions rolled back: counts stay exact.

Bounded: 100 tasks x 10 operations on a pool of 5.
"""

from __future__ import annotations

import asyncio
import random

from ..models import Tweet, User


class Rollback(Exception):
    pass


async def test_mixed_work_with_rollbacks(busy_db):
    db = busy_db
    rng = random.Random(12)
    plan = [[rng.random() < 0.3 for _ in range(10)] for _ in range(100)]
    owner = await User.acreate(username="owner")

    async def worker(n: int, rollbacks: list[bool]) -> int:
        committed = 0
        for i, roll_back in enumerate(rollbacks):
            try:
                async with db.atomic():
                    await Tweet.acreate(user=owner, content=f"{n}-{i}")
                    if i % 3 == 0:
                        async with db.atomic():  # a savepoint that always commits
                            await Tweet.acreate(user=owner, content=f"{n}-{i}-sp")
                    if roll_back:
                        raise Rollback
                committed += 2 if i % 3 == 0 else 1
            except Rollback:
                pass
            if i % 4 == 0:
                await db.count(Tweet.select().where(Tweet.content.startswith(f"{n}-")))
        return committed

    results = await asyncio.gather(*(worker(n, rb) for n, rb in enumerate(plan)))
    assert await db.count(Tweet.select()) == sum(results)
    assert sum(results) > 0
