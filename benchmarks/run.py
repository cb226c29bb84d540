"""fastpeewee against its peers, in one process run: ``make bench`` (``QUICK=1`` for a short one).

Workloads W1-W6 on SQLite and on a throwaway PostgreSQL and MariaDB
(tests/servers.py), on a 10,000-row table, for the raw driver (the floor;
on MariaDB asyncmy, with aiomysql beside it), fastpeewee, playhouse.pwasyncio,
SQLAlchemy 2's asyncio ORM, Tortoise ORM and plain sync peewee; then H1-H3
over HTTP with 1 and 2 uvicorn workers on each server (benchmarks/web.py), and
each peer's peak RSS per workload (benchmarks/memory.py). Peers are
interleaved round by round; the table gives each peer's median ratio to the
raw driver measured in the same round. Every PostgreSQL peer's own session
must report ``synchronous_commit=off``. Results also go to
benchmarks/results/latest.json.

    python -m benchmarks.run [--quick] [--only W1,W4,H1] [--backends sqlite,postgres,mysql]
                             [--workers 1,2] [--no-memory] [--app-rss]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import peewee
from tests.servers import MariaDBServer, PostgresServer, ServerUnavailable

from . import app_rss, memory, report, targets, web
from .peers import Target
from .runner import Cell, Settings, bench_backend
from .schema import Checker, fill, sync_database

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short rounds (5-7 minutes)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W4,H1")
    parser.add_argument("--backends", default="sqlite,postgres,mysql")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="uvicorn worker counts for H1-H3, comma-separated (default: 1,2)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak RSS of each peer per workload, one subprocess per peer (default: on)",
    )
    parser.add_argument(
        "--app-rss",
        action="store_true",
        help="only the reference app's RSS after 10,000 and 100,000 requests (make bench-rss)",
    )
    parser.add_argument(
        "--app-root",
        type=Path,
        default=web.ROOT,
        help="checkout holding examples/sql_app and src/ (default: this one)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    return parser.parse_args()


def _memory(
    target: Target, only: set[str] | None, settings: Settings, payload: dict[str, Any]
) -> None:
    if payload["memory_measured"]:
        payload.setdefault("memory", {})[target.backend] = memory.run_backend(
            target, only, settings
        )


def run_sqlite(settings: Settings, only: set[str] | None, payload: dict[str, Any]) -> list[Cell]:
    with tempfile.TemporaryDirectory(prefix="fastpeewee-bench-") as tmp:
        target = Target("sqlite", path=str(Path(tmp) / "bench.db"))
        fill(sync_database("sqlite", target.path))
        checker = Checker(peewee.SqliteDatabase(target.path))
        cells, _ = asyncio.run(bench_backend(target, checker, settings, only))
        checker.db.close()
        _memory(target, only, settings, payload)
        return cells


def run_postgres(
    settings: Settings,
    only: set[str] | None,
    payload: dict[str, Any],
    app_root: Path,
    workers: list[int],
) -> list[Cell]:
    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        print(f"PostgreSQL unavailable, its workloads skipped: {exc}", file=sys.stderr)
        payload["postgres_skipped"] = str(exc)
        return []
    try:
        target = Target(
            "postgres",
            host="127.0.0.1",
            port=server.port,
            user=server.user,
            database=server.database,
        )
        payload["postgres_version"] = server._psql("SHOW server_version").strip()
        cells: list[Cell] = []
        if only is None or any(k.startswith("W") for k in only):
            fill(sync_database("postgres", server))
            checker = Checker(sync_database("postgres", server))
            cells, payload["synchronous_commit"] = asyncio.run(
                bench_backend(target, checker, settings, only)
            )
            checker.db.close()
            _memory(target, only, settings, payload)
        payload["http"] = web.run_http(server, payload["quick"], only, app_root, workers)
        return cells
    finally:
        server.stop()


def run_mariadb(
    settings: Settings,
    only: set[str] | None,
    payload: dict[str, Any],
    app_root: Path,
    workers: list[int],
) -> list[Cell]:
    try:
        server = MariaDBServer.start()
    except ServerUnavailable as exc:
        print(f"MariaDB unavailable, its workloads skipped: {exc}", file=sys.stderr)
        payload["mysql_skipped"] = str(exc)
        return []
    try:
        target = Target(
            "mysql",
            host="127.0.0.1",
            port=server.port,
            user=server.user,
            password=server.password,
            database=server.database,
        )
        db = sync_database("mysql", server)
        payload["mariadb_version"] = db.execute_sql("SELECT VERSION()").fetchone()[0]
        db.close()
        cells: list[Cell] = []
        if only is None or any(k.startswith("W") for k in only):
            fill(sync_database("mysql", server))
            checker = Checker(sync_database("mysql", server))
            cells, _ = asyncio.run(bench_backend(target, checker, settings, only))
            checker.db.close()
            _memory(target, only, settings, payload)
        payload["http_mysql"] = web.run_http(server, payload["quick"], only, app_root, workers)
        return cells
    finally:
        server.stop()


def main() -> None:
    args = parse_args()
    if args.app_rss:
        app_rss.main(args.app_root, args.quick)
        return
    settings = Settings(3, 2, 0.15) if args.quick else Settings(5, 5, 0.6)
    only = {k.strip().upper() for k in args.only.split(",") if k.strip()} or None
    payload = report.header("make bench" + (" QUICK=1" if args.quick else ""), settings)
    payload["quick"] = args.quick
    payload["memory_measured"] = args.memory
    backends = args.backends.split(",")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    cells = []
    if "sqlite" in backends and (only is None or any(k.startswith("W") for k in only)):
        cells += run_sqlite(settings, only, payload)
    if "postgres" in backends:
        cells += run_postgres(settings, only, payload, args.app_root, workers)
    if "mysql" in backends:
        cells += run_mariadb(settings, only, payload, args.app_root, workers)
    payload["results"] = [cell.as_dict() for cell in cells]
    payload["json"] = str(args.json)
    report.write_json(args.json, payload)
    print_summary(payload, cells)
    if any(c.error.startswith("MISMATCH") for c in cells):
        raise SystemExit("some peers returned wrong results: see MISMATCH above")


def print_summary(payload: dict[str, Any], cells: list[Cell]) -> None:
    m = payload["machine"]
    print(
        f"\n{payload['date']}, {m['cpu']} x{m['cores']}, Python {m['python']}, "
        f"PostgreSQL {payload.get('postgres_version', '-')}, "
        f"MariaDB {payload.get('mariadb_version', '-')}, {payload['command']} "
        f"({payload['rounds']} rounds, {payload['heavy_rounds']} for W4/W6, "
        f"{payload['seconds_per_measurement']} s a measurement)"
    )
    if payload.get("synchronous_commit"):
        print(
            "synchronous_commit per PostgreSQL peer session:",
            ", ".join(f"{k}={v}" for k, v in payload["synchronous_commit"].items()),
        )
    if cells:
        print("\nMedian ratio to the raw driver in the same round (higher is faster):\n")
        print(report.ratio_table(cells))
    for line in report.failures(cells):
        print(f"  {line}")
    for key in ("http", "http_mysql"):
        http = payload.get(key)
        if http and http.get("skipped") != "not selected":
            print()
            print(web.table(http))
    if payload.get("memory"):
        print()
        print(memory.table(payload["memory"]))
    checked = targets.check(payload)
    if checked:
        met = sum(line.startswith("met") for line in checked)
        print(f"\nIssue 15's targets ({met} of {len(checked)} met):")
        print("\n".join(f"  {line}" for line in checked))
    reads = targets.prepared(payload)
    if reads:
        print("\nThe same reads with db.prepare (README: reaching the raw driver's speed):")
        print("\n".join(f"  {line}" for line in reads))
    print(f"\nJSON: {payload['json']}")


if __name__ == "__main__":
    main()
