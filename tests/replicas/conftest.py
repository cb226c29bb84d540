"""Fixtures of the replica tests: one PostgreSQL and one MariaDB primary/replica pair
for the session, and ``pair``, which gives each in turn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import MariaDBPair, Pair, start_mariadb_pair, start_pair


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[Pair]:
    """A throwaway PostgreSQL primary and its streaming hot standby."""
    pair = start_pair()
    yield pair
    pair.stop()


@pytest.fixture(scope="session")
def mariadb_pair() -> Iterator[MariaDBPair]:
    """A throwaway MariaDB primary and its read-only replica (GTID replication)."""
    pair = start_mariadb_pair()
    yield pair
    pair.stop()


@pytest.fixture(params=["postgres", "mysql"])
def pair(request: pytest.FixtureRequest) -> Pair | MariaDBPair:
    """Each kind of primary/replica pair in turn, for the tests that hold on both."""
    name = "pg_pair" if request.param == "postgres" else "mariadb_pair"
    found: Pair | MariaDBPair = request.getfixturevalue(name)
    return found
