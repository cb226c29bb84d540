"""fastpeewee.otel and the slow-statement log: a span per statement on every path, pool
metrics that match pool_stats(), no parameter values anywhere, nothing left after
uninstrument."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import httpx
import peewee
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fastpeewee import PoolTimeout, otel

from ..conftest import make_database, settle
from ..models import User

SECRET = "s3cret-value"  # a parameter value that must never show up in telemetry
SYSTEMS = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mariadb"}
PLACEHOLDERS = {"sqlite": ("?",), "postgres": ("$1", "%s"), "mysql": ("%s",)}


class Telemetry:
    """An SDK tracer provider and meter provider that keep what they get in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, db: Any) -> None:
        otel.instrument(
            db, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def db_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind is SpanKind.CLIENT]

    def metrics(self) -> dict[tuple[str, str, str], Any]:
        """{(metric, pool name, state): value} of the pool metrics collected now."""
        found: dict[tuple[str, str, str], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in cast(Any, metric.data).data_points:
                        attrs = point.attributes or {}
                        key = (
                            metric.name,
                            str(attrs.get("db.client.connection.pool.name")),
                            str(attrs.get("db.client.connection.state", "")),
                        )
                        found[key] = point if metric.name.endswith("wait_time") else point.value
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def assert_no_values(spans: list[ReadableSpan]) -> None:
    """Nothing a span carries (name, attributes, status, events) quotes a value."""
    for span in spans:
        assert SECRET not in span.to_json(), span.to_json()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def by_operation(spans: list[ReadableSpan], operation: str) -> list[ReadableSpan]:
    return [s for s in spans if s.attributes and s.attributes["db.operation.name"] == operation]


async def test_a_span_per_statement_sync_and_async(db, backend, telemetry):
    telemetry.instrument(db)
    await User.acreate(username=SECRET)
    found = await asyncio.to_thread(lambda: User.get(User.username == SECRET).username)
    assert found == SECRET
    await db.run(lambda: User.select().where(User.username == SECRET).count())

    spans = telemetry.db_spans()
    inserts, selects = by_operation(spans, "INSERT"), by_operation(spans, "SELECT")
    assert len(inserts) == 1 and len(selects) == 2, [s.name for s in spans]
    for span in inserts + selects:
        attrs = attributes(span)
        assert attrs["db.system.name"] == attrs["db.system"] == SYSTEMS[backend]
        assert attrs["db.namespace"] == str(db.database)
        assert attrs["db.collection.name"] == "user"
        assert span.name == f"{attrs['db.operation.name']} user"
        assert any(p in str(attrs["db.query.text"]) for p in PLACEHOLDERS[backend])
        assert span.status.status_code is StatusCode.UNSET
        if backend == "sqlite":
            assert "server.address" not in attrs
        else:
            assert attrs["server.address"] == db.connect_params["host"]
            assert attrs["server.port"] == int(db.connect_params["port"])
    assert_no_values(spans)


async def test_transactions_and_streaming_get_spans(db, telemetry):
    await User.acreate(username=SECRET)
    telemetry.instrument(db)
    async with db.atomic():
        await User.acreate(username="in-tx")
    names = [u.username async for u in db.iterate(User.select().where(User.username != "x"))]
    assert sorted(names) == sorted([SECRET, "in-tx"])

    operations = [s.attributes["db.operation.name"] for s in telemetry.db_spans()]
    assert operations[0] == "BEGIN" and operations[-2:] == ["COMMIT", "SELECT"], operations
    assert "INSERT" in operations
    assert_no_values(telemetry.spans())


async def test_bulk_insert(db, backend, telemetry):
    telemetry.instrument(db)
    rows = [{"username": f"{SECRET}-{i}"} for i in range(300)]
    await db.run(lambda: User.insert_many(rows).execute())
    await asyncio.to_thread(
        lambda: User.insert_many([{"username": f"t{i}"} for i in range(50)]).execute()
    )
    assert await db.count(User.select()) == 350

    spans = telemetry.db_spans()
    bulk = [s for s in spans if s.attributes["db.operation.name"] in ("INSERT", "COPY")]
    assert len(bulk) == 2, [s.name for s in spans]  # one statement each
    assert {attributes(s)["db.collection.name"] for s in bulk} == {"user"}
    if backend == "postgres" and db.fast_paths:  # tasks COPY
        assert any(s.attributes["db.operation.name"] == "COPY" for s in bulk)
    if backend == "sqlite" and db.fast_paths:  # one executemany per insert_many
        assert sorted(s.attributes.get("db.operation.batch.size") for s in bulk) == [50, 300]
    assert_no_values(spans)


async def test_a_failing_statement(db, backend, telemetry):
    await User.acreate(username=SECRET)
    telemetry.instrument(db)
    with pytest.raises(peewee.IntegrityError):
        await User.acreate(username=SECRET)
    with pytest.raises(peewee.IntegrityError):
        await asyncio.to_thread(User.create, username=SECRET)

    failed = [s for s in telemetry.db_spans() if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 2
    for span in failed:
        assert str(span.attributes["error.type"]).endswith("IntegrityError")
        assert span.status.description == span.attributes["error.type"]
        code = span.attributes["db.response.status_code"]
        assert code == {"sqlite": "SQLITE_CONSTRAINT_UNIQUE", "postgres": "23505"}.get(
            backend, "1062"
        )
    assert_no_values(telemetry.spans())  # drivers quote the duplicate key in their messages


async def test_inside_a_fastapi_request(db, telemetry):
    telemetry.instrument(db)
    app = FastAPI()

    @app.post("/users")
    async def create() -> int:
        return (await User.acreate(username=SECRET)).id

    @app.get("/count")
    def count() -> int:  # FastAPI's threadpool
        return User.select().count()

    app_traced = OpenTelemetryMiddleware(app, tracer_provider=telemetry.tracer_provider)
    transport = httpx.ASGITransport(app=app_traced)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/users")).status_code == 200
        assert (await client.get("/count")).json() == 1

    spans = telemetry.spans()
    servers = {s.context.span_id: s for s in spans if s.kind is SpanKind.SERVER}
    assert len(servers) == 2
    statements = telemetry.db_spans()
    assert {s.attributes["db.operation.name"] for s in statements} == {"INSERT", "SELECT"}
    for span in statements:
        assert span.parent is not None and span.parent.span_id in servers
        assert span.context.trace_id == servers[span.parent.span_id].context.trace_id
    assert_no_values(spans)


def check_metrics(telemetry: Telemetry, db: Any, in_use: int, waiting: int) -> dict[Any, Any]:
    """The pool metrics collected now are pool_stats(), which shows ``in_use`` and ``waiting``."""
    metrics = telemetry.metrics()
    stats = {s.name: s for s in db.pool_stats()}
    for name, s in stats.items():
        assert metrics["db.client.connection.count", name, "used"] == s.in_use
        assert metrics["db.client.connection.count", name, "idle"] == s.idle
        assert metrics["db.client.connection.pending_requests", name, ""] == s.waiting
        assert metrics["fastpeewee.pool.size", name, ""] == s.size
        assert metrics["db.client.connection.max", name, ""] == s.pool_size
        assert metrics["db.client.connection.idle.min", name, ""] == db.pool_config.pool_min_size
        assert metrics["db.client.connection.timeouts", name, ""] == s.timeouts
    assert sum(s.in_use for s in stats.values()) == in_use
    assert sum(s.waiting for s in stats.values()) == waiting
    return metrics


async def test_pool_metrics_match_pool_stats_under_load(db, telemetry):
    telemetry.instrument(db)
    size = db.pool_config.pool_size
    release = asyncio.Event()

    async def hold() -> None:
        async with db.atomic():
            await db.count(User.select())
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(size + 2)]
    for _ in range(500):
        stats = db.pool_stats()
        if sum(s.waiting for s in stats) == 2 and sum(s.in_use for s in stats) == size:
            break
        await asyncio.sleep(0.01)
    check_metrics(telemetry, db, in_use=size, waiting=2)
    release.set()
    await asyncio.gather(*tasks)
    await settle(db)
    metrics = check_metrics(telemetry, db, in_use=0, waiting=0)
    wait_time = sum(
        point.count for key, point in metrics.items() if key[0] == "db.client.connection.wait_time"
    )
    assert wait_time >= size + 2
    # The two that waited carry their wait on their first statement (BEGIN).
    begins = by_operation(telemetry.db_spans(), "BEGIN")
    waits = sorted(attributes(s).get("fastpeewee.pool.wait", 0.0) for s in begins)
    assert len(begins) == size + 2 and waits[-1] > 0


async def test_timeouts_are_counted_and_traced(backend, request, tmp_path, telemetry):
    db = make_database(backend, request, tmp_path, pool_size=1, acquire_timeout=0.2)
    telemetry.instrument(db)
    try:
        async with db.atomic():
            await db.aexecute_sql("SELECT 1")
            with pytest.raises(PoolTimeout):
                await asyncio.create_task(db.aexecute_sql("SELECT 2"))
        [stats] = db.pool_stats()
        assert stats.timeouts == 1
        assert telemetry.metrics()["db.client.connection.timeouts", stats.name, ""] == 1
        [failed] = [s for s in telemetry.db_spans() if s.status.status_code is StatusCode.ERROR]
        assert failed.attributes["error.type"] == "fastpeewee.errors.PoolTimeout"
    finally:
        await db.close_pool()


async def test_uninstrument_leaves_nothing(db, telemetry):
    telemetry.instrument(db)
    await User.acreate(username="traced")
    assert otel.instrumented(db) and len(telemetry.db_spans()) == 1
    otel.uninstrument(db)
    assert db._watch is None and not otel.instrumented(db)
    assert all(p.on_acquire is None for p in (db._async_pool, db._sync_pool) if p is not None)
    await User.acreate(username="not traced")
    await asyncio.to_thread(User.create, username="nor this")
    assert len(telemetry.db_spans()) == 1
    assert not [k for k in telemetry.metrics() if k[0] != "db.client.connection.wait_time"]
    await db.close_pool()
    await db.count(User.select())  # a new pool, not watched either
    assert db._async_pool is not None and db._async_pool.on_acquire is None


async def test_slow_statement_log(backend, request, tmp_path, caplog, telemetry):
    db = make_database(backend, request, tmp_path, slow_query_seconds=0.0)
    caplog.set_level(logging.WARNING, logger="fastpeewee.slow")
    try:
        await db.aexecute_sql(f"SELECT 1 WHERE 'a' = {db.param}", [SECRET])
        await asyncio.to_thread(db.execute_sql, "SELECT 2")
        records = [r for r in caplog.records if r.name == "fastpeewee.slow"]
        assert [r.sql for r in records] == [
            f"SELECT 1 WHERE 'a' = {db.param}",
            "SELECT 2",
        ]
        for record in records:
            assert record.duration >= 0 and record.pool_wait >= 0
            assert SECRET not in record.getMessage()
        # The first statement opened the pool's first connection: that was its wait.
        assert records[0].pool_wait > 0

        telemetry.instrument(db)  # tracing keeps the threshold; uninstrument keeps it too
        assert db.slow_query_seconds == 0.0
        otel.uninstrument(db)
        assert db.slow_query_seconds == 0.0 and db._watch is not None

        caplog.clear()
        db.slow_query_seconds = 60.0
        await db.aexecute_sql("SELECT 3")
        db.slow_query_seconds = None
        assert db._watch is None
        await db.aexecute_sql("SELECT 4")
        assert not [r for r in caplog.records if r.name == "fastpeewee.slow"]
        with pytest.raises(ValueError, match="slow_query_seconds"):
            db.slow_query_seconds = -1
    finally:
        await db.close_pool()


def test_off_imports_no_opentelemetry(tmp_path: Path):
    script = f"""
import asyncio, sys
import fastpeewee
db = fastpeewee.AsyncSqliteDatabase({str(tmp_path / "x.db")!r}, slow_query_seconds=0.5)
async def main():
    await db.aexecute_sql("SELECT 1")
    await db.close_pool()
asyncio.run(main())
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
print("ok")
"""
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src)},
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr
