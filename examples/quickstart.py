"""fastpeewee in one file: the same database object from async and sync code.

Run with ``make run``. Uses SQLite (nothing to install or start); set
DATABASE_PATH to choose the file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

import peewee

from fastpeewee import AsyncSqliteDatabase

path = os.environ.get("DATABASE_PATH") or os.path.join(tempfile.mkdtemp(), "quickstart.db")
db = AsyncSqliteDatabase(path, pool_size=5, pragmas={"journal_mode": "wal"})


class User(db.Model):
    email = peewee.CharField(unique=True)


class Item(db.Model):
    owner = peewee.ForeignKeyField(User, backref="items")
    title = peewee.CharField()


def sync_report() -> str:
    """Plain peewee, as a FastAPI ``def`` endpoint would run it in a worker thread."""
    with db.atomic():
        owners = User.select().join(Item).distinct().count()
    return f"{owners} users own {Item.select().count()} items"


async def main() -> None:
    await db.acreate_tables([User, Item])
    async with db.atomic():
        for n in range(3):
            user = await User.acreate(email=f"user{n}@example.com")
            await Item.abulk_create([Item(owner=user, title=f"item {i}") for i in range(n + 1)])

    # Ten concurrent "requests": each task gets its own pooled connection.
    async def request(n: int) -> int:
        await asyncio.sleep(0.01)
        owner = f"user{n % 3}@example.com"
        return await db.count(Item.select().join(User).where(User.email == owner))

    started = time.perf_counter()
    counts = await asyncio.gather(*(request(n) for n in range(10)))
    print(f"10 concurrent requests in {time.perf_counter() - started:.3f}s -> {counts}")

    users = await db.aprefetch(User.select().order_by(User.id), Item.select())
    for user in users:
        print(user.email, [item.title for item in user.items])

    print("sync code in a worker thread:", await asyncio.to_thread(sync_report))
    print("pool:", db.pool_stats()[0])
    await db.close_pool()


if __name__ == "__main__":
    asyncio.run(main())
    print(f"database file: {path}")
