"""H2 in one process: GET /users/?limit=100 of both reference apps, without uvicorn or wrk.

Starts a throwaway server, serves examples/sql_app (fastpeewee) and
benchmarks/apps/sqlalchemy_app on their own databases seeded alike (100 users, one
item each, as benchmarks/web.py seeds them), and calls each app's ASGI callable
directly (no sockets, no HTTP parsing: only what the app itself costs), the
variants alternating round by round. Prints the median µs per request and the
split of fastpeewee's request: queries (prepare + db.list), validation, FastAPI's
response validation + JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/profile/h2.py --backend postgres
        [--rounds 7] [--requests 200] [--profile fastpeewee|sqlalchemy]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.web import create_database  # noqa: E402
from tests.servers import MariaDBServer, PostgresServer  # noqa: E402

PATH = "/users/"
QUERY = b"limit=100"


async def call(app: Any, path: str = PATH, query: bytes = QUERY) -> bytes:
    """One GET through the ASGI app; returns the body (asserting a 200)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return b"".join(m.get("body", b"") for m in sent[1:])


async def seed_fastpeewee(models: Any) -> None:
    for n in range(100):
        user = await models.User.acreate(email=f"seed{n}@example.com", hashed_password="x")
        await models.Item.acreate(title=f"item of {n}", description="seeded", owner=user.id)


async def seed_sqlalchemy(database: Any, models: Any) -> None:
    async with database.SessionLocal() as session:
        for n in range(100):
            user = models.User(email=f"seed{n}@example.com", hashed_password="x", is_active=True)
            session.add(user)
            await session.flush()
            session.add(models.Item(title=f"item of {n}", description="seeded", owner_id=user.id))
        await session.commit()


def normalise(body: bytes) -> Any:
    return sorted(
        (u["email"], u["is_active"], sorted((i["title"], i["description"]) for i in u["items"]))
        for u in json.loads(body)
    )


async def main(args: argparse.Namespace) -> None:
    server = (PostgresServer if args.backend == "postgres" else MariaDBServer).start()
    try:
        await run(server, args)
    finally:
        server.stop()


async def run(server: Any, args: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = create_database(server, "h2_sqlalchemy")
    from benchmarks.apps.sqlalchemy_app import database as sa_database
    from benchmarks.apps.sqlalchemy_app import main as sa_main
    from benchmarks.apps.sqlalchemy_app import models as sa_models
    from examples.sql_app import crud, models, schemas
    from examples.sql_app.main import create_app

    from fastpeewee.db_url import connect
    from fastpeewee.schema import _arows
    from fastpeewee.schema._load import _children_query, _plan, prepare, validate

    db = connect(create_database(server, "h2_fastpeewee"), pool_size=10)
    fp_app = create_app(db)
    sa_app = sa_main.app
    async with fp_app.router.lifespan_context(fp_app), sa_app.router.lifespan_context(sa_app):
        await seed_fastpeewee(models)
        await seed_sqlalchemy(sa_database, sa_models)
        a, b = await call(fp_app), await call(sa_app)
        assert normalise(a) == normalise(b), "the apps' JSON differ"

        query = models.User.select().order_by(models.User.id).offset(0).limit(100)

        from pydantic import TypeAdapter

        adapter = TypeAdapter(list[schemas.UserRead])
        loaded = await _arows(query, schemas.UserRead, None)
        validated = validate(loaded, schemas.UserRead)
        plan = _plan(schemas.UserRead, models.User)

        async def fp_http() -> None:
            await call(fp_app)

        async def sa_http() -> None:
            await call(sa_app)

        async def fp_queries() -> None:  # afetch without the validation
            async with db.scope():
                await _arows(query, schemas.UserRead, None)

        items_query = _children_query(*plan.loads[0], loaded)

        async def fp_items_sql() -> None:  # building the items IN (...) query and its SQL
            _children_query(*plan.loads[0], loaded).sql()

        async def fp_users_query() -> None:  # the users page alone, run and hydrated
            async with db.scope():
                await db.list(query.clone())

        async def fp_items_query() -> None:  # the items of the page alone, run and hydrated
            async with db.scope():
                await db.list(items_query.clone())

        async def fp_crud() -> None:
            async with db.scope():
                await crud.get_users(0, 100)

        async def fp_old() -> None:  # afetch before issue 15's H2 step: peewee's with_related
            async with db.scope():
                validate(await db.list(prepare(query, schemas.UserRead)), schemas.UserRead)

        async def fp_validate() -> None:
            validate(loaded, schemas.UserRead)

        async def fp_response() -> None:  # what FastAPI does with the endpoint's result
            adapter.dump_json(adapter.validate_python(validated, from_attributes=True))

        async def cached_users(skip: int = 0, limit: int = 100) -> list[Any]:
            return validated

        async def fp_http_stub() -> None:  # the app around an endpoint that runs no query
            real, crud.get_users = crud.get_users, cached_users
            try:
                await call(fp_app)
            finally:
                crud.get_users = real

        variants = {
            "fastpeewee app": fp_http,
            "SQLAlchemy app": sa_http,
            "fp app, endpoint returning a list": fp_http_stub,
            "fp queries (afetch without validation)": fp_queries,
            "fp users page query": fp_users_query,
            "fp items IN query": fp_items_query,
            "fp items IN query: build + SQL": fp_items_sql,
            "fp crud.get_users (afetch)": fp_crud,
            "fp old afetch (with_related)": fp_old,
            "fp validate 100 users": fp_validate,
            "fp FastAPI response validate+json": fp_response,
        }
        if args.only:
            variants = {k: v for k, v in variants.items() if any(o in k for o in args.only)}
        if args.profile:
            profiled = {"fastpeewee": fp_http, "sqlalchemy": sa_http}
            profiled.update(crud=fp_crud, old=fp_old)
            fn = profiled[args.profile]
            for _ in range(20):
                await fn()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.requests):
                await fn()
            prof.disable()
            stats = pstats.Stats(prof).sort_stats(args.sort)
            stats.print_stats(45)
            return
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(args.rounds):
            order = list(variants.items())
            if round_no % 2:
                order.reverse()
            for name, fn in order:
                for _ in range(10):
                    await fn()
                start, start_cpu = time.perf_counter(), time.process_time()
                if args.concurrency > 1:
                    per_task = args.requests // args.concurrency

                    async def task(fn: Any = fn, n: int = per_task) -> None:
                        for _ in range(n):
                            await fn()

                    await asyncio.gather(*(task() for _ in range(args.concurrency)))
                else:
                    for _ in range(args.requests):
                        await fn()
                times[name].append((time.perf_counter() - start) / args.requests * 1e6)
                cpu[name].append((time.process_time() - start_cpu) / args.requests * 1e6)
        print(
            f"{args.backend}, load {os.getloadavg()[0]:.2f}, {args.rounds} rounds, "
            f"concurrency {args.concurrency}: median wall / CPU of this process per request"
        )
        for name, values in times.items():
            print(
                f"  {name:38s} {statistics.median(values):8.0f} µs "
                f"{statistics.median(cpu[name]):8.0f} µs CPU"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["postgres", "mysql"], default="postgres")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--profile", choices=["fastpeewee", "sqlalchemy", "crud", "old"])
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--only", type=lambda s: s.split(","))
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args))
