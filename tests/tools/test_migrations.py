"""Migrations against fastpeewee databases: fastpeewee.migrations, peewee's own
``playhouse.migrations`` runner and peewee-migrate, from sync code and async code,
and several workers starting at once on a fresh database (each migration once).

Every test works on tables of its own (a fresh suffix), so the shared PostgreSQL
and MariaDB servers need no reset; they are dropped at the end.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import peewee
import pytest
from peewee_migrate import Router
from playhouse.migrations import Runner

from fastpeewee import lock
from fastpeewee.locks import SCHEMA_LOCK
from fastpeewee.migrations import amigrate, history, migrate

from ..conftest import assert_no_leaks, make_database, settle
from ..harness import Outside


def _columns(outside: Outside, table: str) -> set[str]:
    if outside.kind == "sqlite":
        return {row[1] for row in outside.query(f'PRAGMA table_info("{table}")')}
    sql = "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
    if outside.kind == "mysql":
        sql += " AND table_schema = DATABASE()"
    return {row[0] for row in outside.query(sql, (table,))}


def _indexes(outside: Outside, table: str) -> set[str]:
    if outside.kind == "sqlite":
        return {row[1] for row in outside.query(f'PRAGMA index_list("{table}")')}
    if outside.kind == "postgres":
        return {
            r[0]
            for r in outside.query(
                "SELECT indexname FROM pg_indexes WHERE tablename = ?", (table,)
            )
        }
    sql = (
        "SELECT index_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE() AND table_name = ?"
    )
    return {row[0] for row in outside.query(sql, (table,))}


def _schema(suffix: str) -> list[Any]:
    """Five migrations on table person_<suffix>: create, add, data, rename, index, drop."""
    table = f"person_{suffix}"

    def create_person(migrator: Any, db: Any) -> None:
        db.execute_sql(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(100), age INTEGER)"
        )
        db.execute_sql(
            f"INSERT INTO {table} (id, name, age) VALUES (1, 'ann', 30), (2, 'bob', 40)"
        )

    def add_email(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_column(table, "email", peewee.CharField(null=True)))

    def fill_email(migrator: Any, db: Any) -> None:  # a data migration
        db.execute_sql(
            f"UPDATE {table} SET email = name || '@example.com'"
            if db.__class__.__name__ != "AsyncMySQLDatabase"
            else f"UPDATE {table} SET email = CONCAT(name, '@example.com')"
        )

    def rename_name(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.rename_column(table, "name", "full_name"))

    def index_email(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_index(table, ("email",), True))

    def drop_age(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.drop_column(table, "age"))

    return [create_person, add_email, fill_email, rename_name, index_email, drop_age]


def _drop(db: Any, *tables: str) -> None:
    for table in tables:
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")


def _check_schema(outside: Outside, suffix: str, table: str) -> None:
    person = f"person_{suffix}"
    assert _columns(outside, person) == {"id", "full_name", "email"}
    assert any("email" in name for name in _indexes(outside, person))
    rows = outside.query(f"SELECT full_name, email FROM {person} ORDER BY id")
    assert [tuple(r) for r in rows] == [("ann", "ann@example.com"), ("bob", "bob@example.com")]
    names = [r[0] for r in outside.query(f"SELECT name FROM {table} ORDER BY id")]
    assert names == [fn.__name__ for fn in _schema(suffix)]


def test_migrate_from_a_script(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    table = f"history_{suffix}"
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)
    try:
        migrations = _schema(suffix)
        assert migrate(db, migrations[:2], table=table) == ["create_person", "add_email"]
        assert migrate(db, migrations, table=table) == [fn.__name__ for fn in migrations[2:]]
        assert migrate(db, migrations, table=table) == []  # all recorded: nothing runs
        _check_schema(outside, suffix, table)
        assert_no_leaks(db)
        _drop(db, f"person_{suffix}", table)
    finally:
        outside.close()
        db.close_all()


async def test_amigrate_at_start_up(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    table = f"history_{suffix}"
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)
    try:
        migrations = _schema(suffix)
        assert await amigrate(db, migrations, table=table) == [fn.__name__ for fn in migrations]
        assert await amigrate(db, migrations, table=table) == []
        await settle(db)
        assert_no_leaks(db)
        _check_schema(outside, suffix, table)
        await db.run(_drop, db, f"person_{suffix}", table)
    finally:
        outside.close()
        await db.close_pool()
        db.close_all()


@pytest.mark.backends("mysql")
@pytest.mark.parametrize("cancels", [1, 2])
async def test_mysql_amigrate_cancelled_during_a_migration(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, cancels: int
) -> None:
    """MySQL's DDL commits at once: one cancellation during a migration lets it finish
    and be recorded, and the next one never starts; a second cancellation stops the
    run where it is."""
    suffix = uuid.uuid4().hex[:8]
    table, person = f"history_{suffix}", f"person_{suffix}"
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)
    inside = asyncio.Event()  # set from the migration, which runs on the loop's thread

    def slow(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_column(person, "nickname", peewee.CharField(null=True)))
        inside.set()
        db.execute_sql("SELECT SLEEP(0.5)")
        db.execute_sql(f"UPDATE {person} SET nickname = 'n'")

    def never(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_column(person, "karma", peewee.IntegerField(null=True)))

    try:
        migrations = _schema(suffix)[:1]
        await amigrate(db, migrations, table=table)
        job = asyncio.ensure_future(amigrate(db, [*migrations, slow, never], table=table))
        await asyncio.wait_for(inside.wait(), 10)
        for _ in range(cancels):
            job.cancel()
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.CancelledError):
            await job
        recorded = [r[0] for r in outside.query(f"SELECT name FROM {table} ORDER BY id")]
        columns = _columns(outside, person)
        assert "karma" not in columns  # the next migration never started
        assert "nickname" in columns  # the DDL had committed either way
        if cancels == 1:
            assert recorded == ["create_person", "slow"]
        else:  # stopped in the middle: applied, unrecorded (as after a server fault)
            assert recorded == ["create_person"]
        await settle(db)
        assert_no_leaks(db)
        await db.run(_drop, db, person, table)
    finally:
        outside.close()
        await db.close_pool()
        db.close_all()


def test_a_failed_migration(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """PostgreSQL and SQLite roll the whole run back; MySQL/MariaDB's DDL committed
    implicitly, so the column added before the failure stays (unrecorded)."""
    suffix = uuid.uuid4().hex[:8]
    table, person = f"history_{suffix}", f"person_{suffix}"
    db = make_database(backend, request, tmp_path)
    outside = Outside(db)

    def broken(migrator: Any, db: Any) -> None:
        migrator.migrate(migrator.add_column(person, "nickname", peewee.CharField(null=True)))
        db.execute_sql(f"SELECT no_such_column FROM {person}")

    try:
        migrations = _schema(suffix)[:2]
        migrate(db, migrations, table=table)
        with pytest.raises(peewee.DatabaseError):
            migrate(db, [*migrations, broken], table=table)
        columns = _columns(outside, person)
        assert ("nickname" in columns) is (backend == "mysql")
        recorded = [r[0] for r in outside.query(f"SELECT name FROM {table} ORDER BY id")]
        assert recorded == ["create_person", "add_email"]
        assert_no_leaks(db)
        _drop(db, person, table)
    finally:
        outside.close()
        db.close_all()


WORKERS = 4


def _log_migrations(suffix: str) -> list[Any]:
    """Migrations that would fail or leave a trace if run twice."""
    log = f"log_{suffix}"

    def create_log(migrator: Any, db: Any) -> None:
        db.execute_sql(f"CREATE TABLE {log} (id INTEGER PRIMARY KEY, note VARCHAR(50))")

    def add_column(migrator: Any, db: Any) -> None:  # fails when run twice
        migrator.migrate(migrator.add_column(log, "extra", peewee.IntegerField(null=True)))

    def insert_row(migrator: Any, db: Any) -> None:  # two rows when run twice
        db.execute_sql(f"INSERT INTO {log} (id, note) VALUES (1, 'once')")
        db.execute_sql(f"INSERT INTO {log} (id, note) VALUES (2, 'once')")

    return [create_log, add_column, insert_row]


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "loops"])
def test_workers_starting_at_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, use_async: bool
) -> None:
    """Worker database objects (pools of their own) migrate one fresh database at once."""
    rounds = 3 if backend != "mysql" else 2
    for _ in range(rounds):
        _one_start(backend, request, tmp_path, use_async)


def _one_start(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, use_async: bool
) -> None:
    suffix = uuid.uuid4().hex[:8]
    table = f"history_{suffix}"
    options: dict[str, Any] = {"acquire_timeout": 30.0}
    if backend == "sqlite":
        options["pragmas"] = {"journal_mode": "wal"}
    workers = [make_database(backend, request, tmp_path, **options) for _ in range(WORKERS)]
    barrier = threading.Barrier(WORKERS)
    results: list[Any] = [None] * WORKERS

    def start(i: int) -> None:
        migrations = _log_migrations(suffix)
        barrier.wait()
        try:
            if use_async:
                results[i] = asyncio.run(_astart(workers[i], migrations, table))
            else:
                results[i] = migrate(workers[i], migrations, table=table)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    applied = sorted(results, key=len, reverse=True)
    assert applied[0] == ["create_log", "add_column", "insert_row"]
    assert all(r == [] for r in applied[1:]), results
    outside = Outside(workers[0])
    try:
        assert outside.query(f"SELECT COUNT(*) FROM log_{suffix}")[0][0] == 2
        assert outside.query(f"SELECT COUNT(*) FROM {table}")[0][0] == 3
    finally:
        outside.close()
    for worker in workers:
        assert_no_leaks(worker)
    _drop(workers[0], f"log_{suffix}", table)
    for worker in workers:
        worker.close_all()


async def _astart(db: Any, migrations: list[Any], table: str) -> list[str]:
    try:
        applied = await amigrate(db, migrations, table=table)
        await settle(db)
        return applied
    finally:
        await db.close_pool()


RUNNER_FILE = """
from peewee import *

def up(migrator, db):
    migrator.migrate(migrator.add_column("{table}", "karma", IntegerField(default=0)))
"""

ROUTER_FILES = {
    "001_game.py": """
import peewee as pw

def migrate(migrator, database, fake=False, **kwargs):
    @migrator.create_model
    class Game(pw.Model):
        name = pw.CharField()

        class Meta:
            table_name = "{table}"

def rollback(migrator, database, fake=False, **kwargs):
    migrator.remove_model("{table}")
""",
    "002_score.py": """
import peewee as pw

def migrate(migrator, database, fake=False, **kwargs):
    migrator.add_fields("{table}", score=pw.IntegerField(default=0))
    migrator.sql("INSERT INTO {table} (name, score) VALUES ('chess', 7)")

def rollback(migrator, database, fake=False, **kwargs):
    migrator.remove_fields("{table}", "score")
""",
}


def test_peewee_tools_under_the_lock(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """playhouse.migrations' Runner and peewee-migrate's Router on a fastpeewee
    database, each run under the schema lock by two workers: each migration once."""
    suffix = uuid.uuid4().hex[:8]
    person = f"person_{suffix}"
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "0001_karma.py").write_text(RUNNER_FILE.format(table=person))
    (tmp_path / "router").mkdir()
    for name, text in ROUTER_FILES.items():
        (tmp_path / "router" / name).write_text(text.format(table=f"game_{suffix}"))
    workers = [make_database(backend, request, tmp_path, acquire_timeout=30.0) for _ in range(2)]
    migrate(workers[0], _schema(suffix)[:1], table=f"history_{suffix}")
    outside = Outside(workers[0])
    results: list[Any] = [None, None]

    def start(i: int) -> None:
        db = workers[i]
        try:
            with lock(db, SCHEMA_LOCK):
                ran = Runner(db, str(tmp_path / "runner"), table_name=f"runner_{suffix}").up()
            with lock(db, SCHEMA_LOCK):
                ran += Router(
                    db, migrate_dir=tmp_path / "router", migrate_table=f"router_{suffix}"
                ).run()
            results[i] = ran
        except BaseException as exc:
            results[i] = exc

    try:
        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Each tool's migrations ran once, by whichever worker took the lock
        # first for that tool (one worker may run both, or each one of them).
        assert all(isinstance(ran, list) for ran in results), results
        assert sorted(results[0] + results[1]) == ["0001_karma", "001_game", "002_score"], results
        assert "karma" in _columns(outside, person)
        assert _columns(outside, f"game_{suffix}") == {"id", "name", "score"}
        assert [tuple(r) for r in outside.query(f"SELECT name, score FROM game_{suffix}")] == [
            ("chess", 7)
        ]
        assert outside.query(f"SELECT COUNT(*) FROM runner_{suffix}")[0][0] == 1
        assert outside.query(f"SELECT COUNT(*) FROM router_{suffix}")[0][0] == 2
        for worker in workers:
            assert_no_leaks(worker)
        _drop(
            workers[0],
            person,
            f"history_{suffix}",
            f"runner_{suffix}",
            f"router_{suffix}",
            f"game_{suffix}",
        )
    finally:
        outside.close()
        for worker in workers:
            worker.close_all()


def test_history_model(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    db = make_database(backend, request, tmp_path)
    try:
        migrate(db, _schema(suffix)[:1], table=f"history_{suffix}")
        model: Any = history(db, f"history_{suffix}")
        assert [row.name for row in model.select()] == ["create_person"]
        with pytest.raises(ValueError, match="no name"):
            migrate(db, [lambda m, d: None], table=f"history_{suffix}")
        _drop(db, f"person_{suffix}", f"history_{suffix}")
    finally:
        db.close_all()
