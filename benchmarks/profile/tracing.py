"""What tracing costs: W1 (get by primary key) on a throwaway PostgreSQL, tracing
off, with OpenTelemetry's no-op providers, and with the SDK (a batch span
processor into memory, metrics read in memory), plus the slow-statement log
alone. Modes are interleaved round by round; medians are printed, with Python
calls per get counted by cProfile (deterministic, unlike the timings).

    .venv/bin/python benchmarks/profile/tracing.py [--rounds 7] [--gets 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import peewee  # noqa: E402
from opentelemetry.metrics import NoOpMeterProvider  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import NoOpTracerProvider  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

import fastpeewee  # noqa: E402
from fastpeewee import otel  # noqa: E402

MODES = ["off", "slow-log", "otel-noop", "otel-sdk"]


def set_mode(db: Any, mode: str, exporter: InMemorySpanExporter) -> None:
    otel.uninstrument(db)
    db.slow_query_seconds = 10.0 if mode == "slow-log" else None
    if mode == "otel-noop":
        otel.instrument(
            db, tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        )
    elif mode == "otel-sdk":
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        otel.instrument(db, tracer_provider=provider, meter_provider=meters)


async def gets(Item: Any, db: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        row = await db.get(Item.select().where(Item.id == 1 + i % 100))
        assert row.id == 1 + i % 100
    return n / (time.perf_counter() - start)


def calls_per_get(loop: asyncio.AbstractEventLoop, Item: Any, db: Any, n: int) -> float:
    profile = cProfile.Profile()
    profile.enable()
    loop.run_until_complete(gets(Item, db, n))
    profile.disable()
    total: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gets", type=int, default=2000)
    args = parser.parse_args()
    server = PostgresServer.start()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    exporter = InMemorySpanExporter()
    try:
        params: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "user": server.user}
        db = fastpeewee.AsyncPostgresqlDatabase(server.database, **params)

        class Item(db.Model):  # type: ignore[misc, name-defined]
            name = peewee.CharField()

        loop.run_until_complete(db.acreate_tables([Item]))
        loop.run_until_complete(
            db.run(Item.insert_many([{"name": f"n{i}"} for i in range(100)]).execute)
        )
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        calls: dict[str, float] = {}
        for mode in MODES:  # warm-up, and the call counts
            set_mode(db, mode, exporter)
            loop.run_until_complete(gets(Item, db, args.gets))
            calls[mode] = calls_per_get(loop, Item, db, 1000)
        for _ in range(args.rounds):
            for mode in MODES:
                set_mode(db, mode, exporter)
                rates[mode].append(loop.run_until_complete(gets(Item, db, args.gets)))
                exporter.clear()
        off = statistics.median(rates["off"])
        print(f"W1 PostgreSQL, {args.rounds} rounds x {args.gets} gets (median gets/s)")
        for mode in MODES:
            rate = statistics.median(rates[mode])
            print(
                f"{mode:<10} {rate:8.0f} gets/s  {rate / off:6.1%} of off  "
                f"{1e6 / rate - 1e6 / off:+6.1f} us/get  {calls[mode]:6.1f} calls/get"
            )
        otel.uninstrument(db)
        loop.run_until_complete(db.close_pool())
    finally:
        loop.close()
        server.stop()


if __name__ == "__main__":
    main()
