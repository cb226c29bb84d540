"""The benchmark harness (benchmarks/) on a real SQLite file, PostgreSQL and
MariaDB: it measures every peer, flags a peer whose results are wrong, survives
a peer that fails, drives the floors the fast way, measures peak RSS, and
checks issue 15's targets. Speed itself is measured by ``make bench``, not here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import peewee
import pytest
from benchmarks import memory, targets, web
from benchmarks.peers import peers_for
from benchmarks.peers.base import Target
from benchmarks.peers.peewee_family import FastPeewee, SyncPeewee
from benchmarks.peers.raw import RawAiosqlite
from benchmarks.runner import Settings, bench_backend
from benchmarks.schema import BULK_TABLE, ROWS, TABLE, Checker, fill, sync_database

SLOW_PATHS = os.environ.get("FASTPEEWEE_FAST_PATHS") == "0"  # make test-slow-paths


class OffByOne(SyncPeewee):
    """Answers W1 with the wrong row."""

    name = "off by one"

    async def get(self, pk: int) -> Any:
        return await super().get(pk % ROWS + 1)


class NoBulk(SyncPeewee):
    """Fails W4 the way a driver's parameter cap would."""

    name = "no bulk"

    async def bulk(self, rows: list[dict[str, Any]]) -> None:
        raise peewee.InterfaceError("the number of query arguments cannot exceed 32767")


class LosesInserts(SyncPeewee):
    """Reports W3 inserts it never made."""

    name = "loses inserts"

    async def insert(self, row: dict[str, Any]) -> None:
        pass


@pytest.fixture
def target(tmp_path: Path) -> Target:
    path = str(tmp_path / "bench.db")
    fill(sync_database("sqlite", path))
    return Target("sqlite", path=path)


async def test_harness_measures_flags_and_survives(target: Target) -> None:
    checker = Checker(peewee.SqliteDatabase(target.path))
    peers = [
        SyncPeewee(target),
        FastPeewee(target),
        OffByOne(target),
        NoBulk(target),
        LosesInserts(target),
    ]
    cells, _ = await bench_backend(
        target, checker, Settings(2, 1, 0.02), {"W1", "W3", "W4"}, peers
    )
    by = {(c.workload, c.peer): c for c in cells}

    for key in ("W1", "W3", "W4"):
        for name in ("peewee (sync)", "fastpeewee"):
            cell = by[(key, name)]
            assert cell.error == "" or (key == "W4" and name == "fastpeewee"), cell.error
        floor = by[(key, "peewee (sync)")]
        assert floor.rate is not None and floor.rate > 0 and floor.ratio == 1.0
    assert by[("W1", "off by one")].error.startswith("MISMATCH: W1 get(")
    assert by[("W1", "off by one")].ratio is None
    assert by[("W4", "no bulk")].error.startswith("failed: InterfaceError: the number")
    assert by[("W3", "loses inserts")].error.startswith("MISMATCH: W3 inserted 0 rows")
    assert by[("W1", "no bulk")].error == ""  # one failed workload does not sink the others
    assert checker.count(BULK_TABLE) == 0
    assert checker.count(TABLE) > ROWS
    checker.db.close()


async def test_raw_aiosqlite_get_is_one_hop(target: Target) -> None:
    """The SQLite floor is driven the fastest way aiosqlite offers: one trip to its
    thread per get or page (execute_fetchall), not execute + fetchone + close."""
    raw = RawAiosqlite(target)
    await raw.setup()
    hops = 0
    real = raw.conn._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real(fn, *args, **kwargs)

    raw.conn._execute = counted
    try:
        row = await raw.get(17)
        assert raw.pk(row) == 17 and hops == 1
        page = await raw.page(200)
        assert [raw.pk(r) for r in (page[0], page[-1])] == [201, 300] and hops == 2
    finally:
        raw.conn._execute = real
        await raw.teardown()


def _server_target(backend: str, server: Any) -> Target:
    params = server.connect_params
    return Target(
        backend,
        host=params["host"],
        port=params["port"],
        user=params["user"],
        password=params.get("password") or "",
        database=server.database,
    )


async def _every_peer(backend: str, server: Any) -> None:
    target = _server_target(backend, server)
    fill(sync_database(backend, server))
    checker = Checker(sync_database(backend, server))
    try:
        cells, _ = await bench_backend(
            target, checker, Settings(1, 1, 0.01), {"W1", "W2", "W4", "W5"}
        )
        peers = [p.name for p in peers_for(target)]
        assert {c.peer for c in cells} == set(peers)
        for cell in cells:
            if SLOW_PATHS and cell.workload == "W4" and cell.peer.startswith("fastpeewee"):
                continue  # batching under the driver's parameter cap is a fast path
            assert cell.error == "", (cell.workload, cell.peer, cell.error)
            assert cell.rate is not None and cell.rate > 0
            if cell.peer == peers[0]:
                assert cell.ratio == 1.0  # the first raw driver is the floor
        assert checker.count(BULK_TABLE) == 0
        assert checker.count(TABLE) > ROWS  # W5 inserted, and each was counted
    finally:
        checker.db.execute_sql(f"DROP TABLE IF EXISTS {TABLE}, {BULK_TABLE}")
        checker.db.close()


async def test_every_mariadb_peer_measures_right(mariadb_server: Any) -> None:
    """raw asyncmy (the floor), raw aiomysql, fastpeewee, pwasyncio's MySQL class,
    SQLAlchemy and Tortoise on asyncmy, sync peewee: each returns the right rows."""
    await _every_peer("mysql", mariadb_server)
    assert [p.name for p in peers_for(Target("mysql"))][:2] == ["raw asyncmy", "raw aiomysql"]


async def test_every_postgres_peer_measures_right(postgres_server: Any) -> None:
    """The asyncpg floor on prepared statements, and every peer, on a real server."""
    await _every_peer("postgres", postgres_server)


async def test_memory_peak_per_workload(target: Target) -> None:
    """A peer's peak RSS per workload: a positive peak, a rise that is not negative."""
    found = await memory.measure_peer(target, "fastpeewee", ["W1", "W3"], 0.02)
    assert found["rss_after_setup_mb"] > 10
    for key in ("W1", "W3"):
        w = found["workloads"][key]
        assert w["peak_mb"] >= found["rss_after_setup_mb"] * 0.5 and w["rise_mb"] >= 0
    text = memory.table({"sqlite": {"fastpeewee": found}})
    assert "| SQLite W1 |" in text and "| SQLite W3 |" in text


def _cell(backend: str, workload: str, peer: str, ratio: float | None) -> dict[str, Any]:
    return {"backend": backend, "workload": workload, "peer": peer, "median_ratio": ratio}


def test_targets_three_backends_and_workers() -> None:
    results = [
        _cell("postgres", "W1", "raw asyncpg", 1.0),
        _cell("postgres", "W1", "fastpeewee", 0.8),
        _cell("postgres", "W1", "Tortoise ORM", 0.7),  # fastpeewee only 1.14x: missed
        _cell("sqlite", "W3", "fastpeewee", 0.9),
        _cell("sqlite", "W3", "peewee (sync)", 0.8),
        _cell("mysql", "W4", "fastpeewee", None),  # failed
        _cell("mysql", "W4", "raw asyncmy", 1.0),
    ]
    http = {
        "backend": "mysql",
        "results": [
            {"workload": "H1", "app": "fastpeewee", "workers": 2, "median_ratio": 1.6},
            {"workload": "H2", "app": "fastpeewee", "workers": 1, "median_ratio": 1.2},
            {"workload": "H3", "app": "fastpeewee", "workers": 1, "median_ratio": 1.0},
        ],
    }
    lines = targets.check({"results": results, "http_mysql": http})
    assert "met     PostgreSQL W1 fastpeewee / raw asyncpg: 0.80, target >= 0.75" in lines
    assert "MISSED  PostgreSQL W1 fastpeewee / Tortoise ORM: 1.14, target >= 1.3" in lines
    assert "met     SQLite W3 fastpeewee / sync peewee: 1.12, target >= 1" in lines
    assert "MISSED  MariaDB W4 fastpeewee / raw asyncmy: no result (failed), target >= 1" in lines
    assert (
        "met     MariaDB H1 fastpeewee app / SQLAlchemy app, 2 worker(s): 1.60, target >= 1.5"
        in lines
    )
    assert (
        "MISSED  MariaDB H2 fastpeewee app / SQLAlchemy app, 1 worker(s): 1.20, target >= 1.5"
        in lines
    )
    assert not any("H3" in line for line in lines)  # sign-up is scrypt-bound: no target
    assert len(lines) == 6


def test_prepared_reads_are_reported_beside_the_targets() -> None:
    """The db.prepare reads are shown against the usual calls' raw targets, never
    counted as targets themselves (nor compared with the ORM peers)."""
    results = [
        _cell("postgres", "W1", "fastpeewee", 0.6),
        _cell("postgres", "W1", "fastpeewee prepared", 0.9),
        _cell("postgres", "W3", "fastpeewee prepared", 0.7),  # a write: not shown
    ]
    assert targets.prepared({"results": results}) == [
        "PostgreSQL W1 fastpeewee prepared / raw asyncpg: 0.90 (the usual calls' target: >= 0.75)"
    ]
    assert not any("prepared" in line for line in targets.check({"results": results}))


def test_http_table_has_workers_and_latency() -> None:
    def cell(app: str, workers: int, rps: float, ratio: float | None) -> dict[str, Any]:
        return {
            "workload": "H1",
            "app": app,
            "workers": workers,
            "median_rps": rps,
            "median_ratio": ratio,
            "median_p50_ms": 3.25,
            "median_p99_ms": 12.5,
        }

    http = {
        "backend": "postgres",
        "connections": 10,
        "rounds": 2,
        "seconds": 2.0,
        "baseline": "SQLAlchemy",
        "workers": [1, 2],
        "results": [
            cell("fastpeewee", 1, 2000, 2.0),
            cell("SQLAlchemy", 1, 1000, 1.0),
            cell("fastpeewee", 2, 3000, 1.5),
            cell("SQLAlchemy", 2, 2000, 1.0),
        ],
    }
    text = web.table(http)
    assert "HTTP on PostgreSQL, uvicorn --workers 1/2" in text
    assert "| H1 GET /users/{id} | 1 | 2,000 | 3.2 / 12.5 | 1,000 | 3.2 / 12.5 | 2.00 |" in text
    assert "| H1 GET /users/{id} | 2 | 3,000 | 3.2 / 12.5 | 2,000 | 3.2 / 12.5 | 1.50 |" in text
