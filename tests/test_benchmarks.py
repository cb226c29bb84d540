"""The benchmark harness (benchmarks/) on a real SQLite file: it measures every
peer, flags a peer whose results are wrong, and survives a peer that fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peewee
import pytest
from benchmarks.peers.base import Target
from benchmarks.peers.peewee_family import FastPeewee, SyncPeewee
from benchmarks.runner import Settings, bench_backend
from benchmarks.schema import BULK_TABLE, ROWS, TABLE, Checker, fill, sync_database


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
